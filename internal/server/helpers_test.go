package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/relay/relay/internal/node/nodetest"
)

// request makes an HTTP request and decodes a JSON answer.
func request(t *testing.T, method, url, auth, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: invalid JSON %q", method, url, raw)
		}
	} else {
		m = map[string]any{"text": string(raw)}
	}
	return resp.StatusCode, m
}

func notify(t *testing.T, n *nodetest.Node, body string) (int, map[string]any) {
	t.Helper()
	return request(t, http.MethodPost, n.URL()+"/api/notify", n.Config.APIKey, body)
}
