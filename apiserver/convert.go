package apiserver

import (
	"math"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// resourceList turns one window into the usage metrics-server serves: CPU in nanocores as a
// DecimalSI quantity with scale -9 ("12345n"), memory in bytes as a BinarySI quantity.
func resourceList(u tsdb.Usage) corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    uint64Quantity(u.CPUNanoCores, resource.DecimalSI, -9),
		corev1.ResourceMemory: uint64Quantity(u.MemoryBytes, resource.BinarySI, 0),
	}
}

// uint64Quantity builds a Quantity from a uint64, which resource.Quantity has no constructor
// for. A value above math.MaxInt64 loses one decimal digit of precision, as in metrics-server.
func uint64Quantity(val uint64, format resource.Format, scale resource.Scale) resource.Quantity {
	var q *resource.Quantity
	if val > math.MaxInt64 {
		q = resource.NewScaledQuantity(int64(val/10), scale+1)
	} else {
		q = resource.NewScaledQuantity(int64(val), scale)
	}
	q.Format = format
	return *q
}
