// Package crashpoint lets tests kill Hindsight at chosen moments: inside a commit, a
// compaction, the shutdown snapshot or the catalog's compaction rename, where a kill -9 at a
// random time almost never lands.
//
// Code marks a moment with Hit("name"). In a normal build Hit does nothing and Enabled is
// false: production binaries cannot be crashed by an environment variable. In a binary
// built with -tags crashpoints, Hit kills its own process with SIGKILL (nothing deferred
// runs, no buffer is flushed: exactly a kill -9) when the environment variable
// HINDSIGHT_CRASH_AT is "name" (the first hit) or "name:n" (the n-th hit, n ≥ 1). OnOpen
// starts a watcher for a moment that happens inside a library (the TSDB's head snapshot):
// the process is killed while a matching open(2) in a directory is pending, until the
// returned stop is called.
//
// The names are the constants below; one definition each, which code and tests share.
package crashpoint

// EnvVar names the crash point to trigger, "name" or "name:n".
const EnvVar = "HINDSIGHT_CRASH_AT"

// Crash points.
const (
	// CommitBefore is just before the TSDB commit of a Write: its samples are not in the WAL.
	CommitBefore = "tsdb.commit.before"
	// CommitAfter is just after the TSDB commit of a Write, before Write returns.
	CommitAfter = "tsdb.commit.after"
	// CompactHeadWritten is after a head compaction wrote its block, before the head is
	// truncated and the WAL checkpointed: the block and the WAL overlap.
	CompactHeadWritten = "tsdb.compact.head-written"
	// CompactBlocksWritten is after blocks were compacted into a new one, before the old
	// ones are deleted: the new block overlaps its parents.
	CompactBlocksWritten = "tsdb.compact.blocks-written"
	// CloseSnapshot is while Close writes the head's chunk snapshot (its temporary
	// directory exists).
	CloseSnapshot = "tsdb.close.snapshot"
	// CatalogCompactBeforeRename is after the catalog's compacted copy is written, before
	// it is renamed over the file.
	CatalogCompactBeforeRename = "catalog.compact.before-rename"
	// CatalogCompactAfterRename is after the rename, before the directory is synced.
	CatalogCompactAfterRename = "catalog.compact.after-rename"
)
