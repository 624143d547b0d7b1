// Package bench holds Hindsight's macro benchmarks: a fake kubelet fleet on loopback, Hindsight
// and the metrics-server peer scraping it in the same run, figures reported as ratios. It may
// import anything; nothing imports it.
package bench
