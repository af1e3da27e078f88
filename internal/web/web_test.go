package web_test

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/web"
)

// The handler alone, and as mounted on a node: no browser needed.
func TestServesEmbeddedFiles(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	for _, c := range []struct{ path, contentType, contains string }{
		{"/demo", "text/html; charset=utf-8", `<script src="relay.js"></script>`},
		{"/relay.js", "text/javascript; charset=utf-8", "class Relay"},
	} {
		resp, err := http.Get(n.URL() + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.contentType || !strings.Contains(string(body), c.contains) {
			t.Fatalf("GET %s: %d %q, body has %q: %v", c.path, resp.StatusCode, resp.Header.Get("Content-Type"),
				c.contains, strings.Contains(string(body), c.contains))
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s: headers %v", c.path, resp.Header)
		}

		// Revalidation answers 304 with no body.
		req, _ := http.NewRequest(http.MethodGet, n.URL()+c.path, nil)
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		again, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		again.Body.Close()
		if resp.Header.Get("ETag") == "" || again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match %q: %d", c.path, resp.Header.Get("ETag"), again.StatusCode)
		}
	}
}

func TestUnknownPathIsNotFound(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/", "/demo.html", "/static/relay.js", "/demo/"} {
		w := httptest.NewRecorder()
		web.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, w.Code)
		}
	}
}

// The page's Content-Security-Policy allows exactly its own inline script
// and style, by hash (the browser tests would fail if it blocked them).
func TestDemoContentSecurityPolicy(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	web.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/demo", nil))
	csp := w.Header().Get("Content-Security-Policy")
	if w.Header().Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("Referrer-Policy %q: a ?token= in the page URL could leak", w.Header().Get("Referrer-Policy"))
	}
	body := w.Body.String()
	for tag, directive := range map[string]string{"script": "script-src 'self'", "style": "style-src"} {
		blocks := regexp.MustCompile(`(?s)<`+tag+`>(.*?)</`+tag+`>`).FindAllStringSubmatch(body, -1)
		if len(blocks) != 1 {
			t.Fatalf("%d inline <%s> blocks, want 1", len(blocks), tag)
		}
		sum := sha256.Sum256([]byte(blocks[0][1]))
		want := directive + " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "';"
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, d := range []string{"default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("CSP %q lacks %q", csp, d)
		}
	}
}
