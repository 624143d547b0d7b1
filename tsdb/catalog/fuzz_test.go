package catalog

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// FuzzDecodeRecord checks that decoding arbitrary bytes as a pod or node record never
// panics, and that whatever decodes re-encodes to a record that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	p := mergePod(nil, webPod("u1", "web-1", "n1"), t0)
	p = mergePod(&p, resized(webPod("u1", "web-1", "n1"), res(500, 1<<30), nil), t0.Add(time.Minute))
	pb, err := encodePod(&p)
	if err != nil {
		f.Fatal(err)
	}
	n := mergeNode(nil, NodeRecord{Name: "n1", Capacity: res(4000, 16<<30), Zone: "a"}, t0)
	nb, err := encodeNode(&n)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{string(pb), string(nb), "", "{}", "null", `{"uid":"u","namespace":"n","name":"x","containers":[{"changes":[{"at":"bad"}]}]}`,
		`{"uid":"a\u0000b","namespace":"n","name":"x"}`, `{"name":"n1","capacity":{"cpu":1e400}}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodePod(b); err == nil {
			again, err := encodePod(&r)
			if err != nil {
				t.Fatalf("re-encode decoded pod: %v", err)
			}
			r2, err := decodePod(again)
			if err != nil {
				t.Fatalf("decode re-encoded pod: %v", err)
			}
			if diff := cmp.Diff(r, r2); diff != "" {
				t.Errorf("pod round trip (-first +second):\n%s", diff)
			}
			podIndexEntries(&r) // must not panic either
		}
		if r, err := decodeNode(b); err == nil {
			again, err := encodeNode(&r)
			if err != nil {
				t.Fatalf("re-encode decoded node: %v", err)
			}
			r2, err := decodeNode(again)
			if err != nil {
				t.Fatalf("decode re-encoded node: %v", err)
			}
			if diff := cmp.Diff(r, r2); diff != "" {
				t.Errorf("node round trip (-first +second):\n%s", diff)
			}
		}
	})
}
