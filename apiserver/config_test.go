package apiserver

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	err := (&Config{}).Validate()
	if err == nil {
		t.Fatal("Validate() of an empty Config succeeded")
	}
	for _, want := range []string{"Generic is required", "Source is required", "Nodes is required", "Pods is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q; want it to mention %q", err, want)
		}
	}

	// A generic config without serving or auth is refused: the server never runs open.
	f := newFixture(t)
	cfg := &Config{Generic: NewGenericConfig(), Source: f.source, Nodes: f.nodes, Pods: f.pods}
	_, err = cfg.Complete().New()
	if err == nil {
		t.Fatal("New() without serving and auth succeeded")
	}
	for _, want := range []string{"SecureServing is required", "Authenticator is required", "Authorizer is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New() = %q; want it to mention %q", err, want)
		}
	}
}
