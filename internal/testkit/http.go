package testkit

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Do sends an HTTP request with an optional bearer key and JSON body and
// returns the status and the answer's body.
func Do(t testing.TB, method, url, key, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}

// DoJSON is Do for an API that answers a JSON object: it fails the test if
// the answer is anything else.
func DoJSON(t testing.TB, method, url, key, body string) (int, map[string]any) {
	t.Helper()
	status, raw := Do(t, method, url, key, body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s answered %d with %.200q, not a JSON object", method, url, status, raw)
	}
	return status, m
}
