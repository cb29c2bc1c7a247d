//go:build broker

package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestSelftestThroughBuiltinBroker runs selftest in a build with the
// built-in broker (make test runs it with -tags broker): the load goes
// through it over MQTT.
func TestSelftestThroughBuiltinBroker(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"selftest"}, &out, &errOut); code != 0 {
		t.Fatalf("selftest exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "through the built-in broker") {
		t.Errorf("selftest did not go through the built-in broker: %s", out.String())
	}
}
