package promapi

import (
	"net/http"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// checkEvery is how many series series reads between checks of its context.
const checkEvery = 128

// series serves the label sets of the series that match[] select.
func (h *Handler) series(r *http.Request) result {
	oq, aerr := h.open(r, true)
	if aerr != nil {
		return result{err: aerr}
	}
	hints := &storage.SelectHints{
		Start: oq.start,
		End:   oq.end,
		Func:  "series", // no function: tells the storage that no samples are needed
		Limit: hintLimit(oq.limit),
	}
	var set storage.SeriesSet
	if len(oq.sets) == 1 {
		set = oq.q.Select(oq.ctx, false, hints, oq.sets[0]...)
	} else {
		sets := make([]storage.SeriesSet, 0, len(oq.sets))
		for _, ms := range oq.sets {
			sets = append(sets, oq.q.Select(oq.ctx, true, hints, ms...)) // sorted, to be merged
		}
		set = storage.NewMergeSeriesSet(sets, 0, storage.ChainedSeriesMerge)
	}
	found := []labels.Labels{}
	for i := 1; set.Next(); i++ {
		if i%checkEvery == 0 {
			if err := oq.ctx.Err(); err != nil {
				return oq.fail(h.storageError(err), set.Warnings())
			}
		}
		found = append(found, set.At().Labels())
		if oq.limit > 0 && len(found) > oq.limit {
			found = found[:oq.limit]
			warnings := set.Warnings()
			return result{data: found, warnings: warnings.Add(errTruncated), done: oq.done}
		}
	}
	if err := set.Err(); err != nil {
		return oq.fail(h.storageError(err), set.Warnings())
	}
	return result{data: found, warnings: set.Warnings(), done: oq.done}
}
