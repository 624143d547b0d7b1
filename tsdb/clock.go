package tsdb

import (
	"fmt"
	"time"
)

// Kubelet clocks.
//
// Samples carry the kubelet's own timestamps, so a node whose clock is wrong writes samples
// at the wrong time. The Prometheus TSDB accepts into its head only samples newer than its
// newest sample minus one hour (half its 2h chunk range), and time retention counts back
// from the newest block: one node two hours ahead makes the head refuse nearly every other
// node's samples as out of bounds, and one days ahead makes retention delete real blocks.
// A node whose samples are too far from its scrape time is therefore not stored at all.
//
// The bound is ClockSkewBound(resolution) = max(2 × resolution, 30s), at most 30m, either
// way. A healthy kubelet's timestamps are those of its cached stats: up to one housekeeping
// interval (10-15s) before the request, never after the response by more than the clock's
// error, and the response comes within the round (one resolution). 30s is twice the
// longest housekeeping interval, and 2 × resolution covers a request that takes its whole
// round, so NTP-synced nodes are never refused. The bound is far below the TSDB's hour:
// a node ahead by less than it moves the head's newest time by at most that much, which
// never puts another node's samples out of bounds, and when such a node's clock steps
// back it loses at most that long of samples as out of order. The cap keeps that true
// for resolutions longer than 15m.

const (
	minClockSkewBound = 30 * time.Second
	maxClockSkewBound = 30 * time.Minute
	clockSkewFactor   = 2
)

// ClockSkewBound returns how far the newest sample time of a node's scrape may be from its
// ScrapeTime, ahead or behind, at a scrape interval of resolution: max(2 × resolution, 30s),
// at most 30m.
func ClockSkewBound(resolution time.Duration) time.Duration {
	return min(max(clockSkewFactor*resolution, minClockSkewBound), maxClockSkewBound)
}

// ClockOffset returns how far the node's clock is from the scraper's: the newest sample time
// of the scrape (node, pods and containers) minus ScrapeTime. ok is false when ScrapeTime
// is zero or no sample carries a time. A healthy kubelet's offset is between minus one
// housekeeping interval (its stats are cached) and the request's duration.
func (ns *NodeScrape) ClockOffset() (offset time.Duration, ok bool) {
	if ns.ScrapeTime.IsZero() {
		return 0, false
	}
	var newest time.Time
	see := func(t time.Time) {
		if t.After(newest) {
			newest = t
		}
	}
	if ns.HasNode {
		see(ns.NodeSample.Time)
	}
	for i := range ns.Pods {
		see(ns.Pods[i].Time)
	}
	for i := range ns.Containers {
		see(ns.Containers[i].Time)
	}
	if newest.IsZero() {
		return 0, false
	}
	return newest.Sub(ns.ScrapeTime), true
}

// ClockSkewError reports a node whose samples are too far from its scrape time to be stored.
type ClockSkewError struct {
	Node string
	// Offset is the node's ClockOffset: positive when its clock is ahead.
	Offset time.Duration
	// Bound is the ClockSkewBound it exceeds.
	Bound time.Duration
}

func (e *ClockSkewError) Error() string {
	dir := "ahead"
	if e.Offset < 0 {
		dir = "behind"
	}
	return fmt.Sprintf("node %s: clock %s by %s (sample time minus scrape time %s), more than %s: samples not stored",
		e.Node, dir, e.Offset.Abs().Round(time.Second), FormatOffset(e.Offset), e.Bound)
}

// FormatOffset formats a clock offset with its sign, rounded to the second below an hour
// and to the minute above: "+2h0m0s", "-45s".
func FormatOffset(d time.Duration) string {
	r := time.Second
	if d.Abs() >= time.Hour {
		r = time.Minute
	}
	s := d.Round(r).String()
	if d >= 0 {
		s = "+" + s
	}
	return s
}

// CheckClock returns a *ClockSkewError when ns's ClockOffset exceeds ClockSkewBound of
// resolution either way, and nil otherwise (also when the offset is unknown). Write drops
// such a node from its batch; a scraper calls CheckClock first to count and report it.
func CheckClock(ns *NodeScrape, resolution time.Duration) error {
	off, ok := ns.ClockOffset()
	if !ok {
		return nil
	}
	if bound := ClockSkewBound(resolution); off.Abs() > bound {
		return &ClockSkewError{Node: ns.Node, Offset: off, Bound: bound}
	}
	return nil
}
