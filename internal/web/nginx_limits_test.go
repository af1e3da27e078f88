package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/relay/relay/internal/nginxtest"
	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/testkit"
)

// The shipped nginx config keeps /metrics off the public path, and its body
// limit is relay's own (6 × RELAY_MAX_MESSAGE_BYTES + 4 KiB of escaped
// JSON), answered in JSON like relay rather than with nginx's HTML page.
func TestNginxLimitsAgreeWithRelay(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	lb := nginxtest.Start(t, n.Addr).URL()

	get := func(url string) (int, string) {
		status, raw := testkit.Do(t, http.MethodGet, url, "", "")
		return status, string(raw)
	}
	if status, body := get(lb + "/metrics"); status != http.StatusNotFound || strings.Contains(body, "relay_connections") {
		t.Errorf("/metrics through nginx: %d %.100q, want 404", status, body)
	}
	if status, _ := get(n.URL() + "/metrics"); status != http.StatusOK {
		t.Errorf("/metrics on the node itself: %d", status)
	}

	post := func(body string) (int, map[string]any) {
		return testkit.DoJSON(t, http.MethodPost, lb+"/api/notify", "", body)
	}
	// The largest message relay takes, fully escaped, passes nginx.
	biggest := `{"message":"` + strings.Repeat(`\u0041`, 65536) + `"}`
	if status, body := post(biggest); status != http.StatusOK {
		t.Errorf("a %d-byte body relay accepts: %d %v through nginx", len(biggest), status, body)
	}
	if status, body := post(`{"message":"` + strings.Repeat("x", 400000) + `"}`); status != http.StatusRequestEntityTooLarge || body["error"] == nil {
		t.Errorf("a body past the limit: %d %v, want 413 with a JSON error", status, body)
	}
}
