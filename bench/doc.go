// Package bench holds Hindsight's macro benchmarks. Today: the history API over synthetic
// stores of a week of 1,000 pods and a month of 50 nodes (history_test.go), through the real
// handler, TSDB and catalog. Planned: a fake kubelet fleet on loopback with Hindsight and the
// metrics-server peer scraping it in the same run, figures reported as ratios. It may import
// anything; nothing imports it.
package bench
