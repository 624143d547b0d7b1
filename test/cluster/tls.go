package cluster

import (
	"crypto/tls"
	"net/http"
	"time"
)

func newInsecureClient() *http.Client {
	return &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // loopback health checks only
	}
}
