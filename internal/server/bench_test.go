package server_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkAPIData measures the handler stack for GET /api/data without the
// network: routing, middleware and the answer.
func BenchmarkAPIData(b *testing.B) {
	n := startNode(b, nil)
	h := n.srv.Handler()
	req := httptest.NewRequest(http.MethodGet, "/api/data", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
