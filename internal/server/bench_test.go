package server_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/relay/relay/internal/node/nodetest"
)

// BenchmarkAPIData measures the handler stack for GET /api/data without the
// network: routing, middleware and the answer.
func BenchmarkAPIData(b *testing.B) {
	n := nodetest.Start(b, nil)
	h := n.Node().Handler()
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
