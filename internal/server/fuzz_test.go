package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/relay/relay/internal/node/nodetest"
)

// FuzzNotifyBody: notify bodies come from backends and from anyone who can
// reach the API. Every body gets 200 or 400 with a JSON answer: never a
// 5xx, never a panic.
func FuzzNotifyBody(f *testing.F) {
	for _, seed := range []string{
		`{"message":"hi"}`, `{"message":"hi","room":"ops"}`, `{"message":"hi","user":"alice"}`,
		`{"message":""}`, `{"message":5}`, `{"message":"a","room":"bad room"}`, `{"message":"a","room":"r","user":"u"}`,
		`{"message":"a"} {"message":"b"}`, `[]`, `null`, ``, `{"message":"\u0001\u0001"}`, `{"message":"\ud800"}`,
	} {
		f.Add(seed)
	}
	n := nodetest.Start(f, map[string]string{"RELAY_MAX_MESSAGE_BYTES": "1024"})
	h := n.Node().Handler()
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/api/notify", strings.NewReader(body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var answer map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil {
			t.Fatalf("body %q: answer %d is not JSON: %q", body, w.Code, w.Body)
		}
		switch w.Code {
		case http.StatusOK:
			if answer["success"] != true {
				t.Fatalf("body %q: 200 without success: %v", body, answer)
			}
		case http.StatusBadRequest:
			if answer["error"] == nil {
				t.Fatalf("body %q: 400 without an error: %v", body, answer)
			}
		default:
			t.Fatalf("body %q: answered %d %v", body, w.Code, answer)
		}
	})
}
