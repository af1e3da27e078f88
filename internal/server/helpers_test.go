package server_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/testkit"
)

// request makes an HTTP request and decodes a JSON answer; any other
// answer comes back as {"text": ...}.
func request(t *testing.T, method, url, auth, body string) (int, map[string]any) {
	t.Helper()
	status, raw := testkit.Do(t, method, url, auth, body)
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		m = map[string]any{"text": string(raw)}
	}
	return status, m
}

func notify(t *testing.T, n *nodetest.Node, body string) (int, map[string]any) {
	t.Helper()
	return request(t, http.MethodPost, n.URL()+"/api/notify", n.Config.APIKey, body)
}
