// Package web serves relay's browser demo page (GET /demo) and its
// JavaScript client (GET /relay.js) from files embedded in the binary, so
// every node serves them with nothing to install or build.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"regexp"
	"strings"
	"time"
)

//go:embed static/demo.html static/relay.js
var static embed.FS

// file is one embedded file, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string
	csp         string // Content-Security-Policy, for HTML
}

// files maps a request path to what it serves.
var files = map[string]*file{
	"/demo":     load("static/demo.html", "text/html; charset=utf-8"),
	"/relay.js": load("static/relay.js", "text/javascript; charset=utf-8"),
}

func load(name, contentType string) *file {
	body, err := static.ReadFile(name)
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	sum := sha256.Sum256(body)
	f := &file{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	if strings.HasPrefix(contentType, "text/html") {
		f.csp = contentSecurityPolicy(body)
	}
	return f
}

var (
	inlineScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)
	inlineStyle  = regexp.MustCompile(`(?s)<style>(.*?)</style>`)
)

// contentSecurityPolicy allows the page's own inline script and style by
// hash, and scripts, fetches and WebSockets from its own origin only: even
// if some text from the network ended up as HTML, no other script would run.
func contentSecurityPolicy(html []byte) string {
	hashes := func(re *regexp.Regexp) string {
		var b strings.Builder
		for _, m := range re.FindAllSubmatch(html, -1) {
			sum := sha256.Sum256(m[1])
			b.WriteString(" 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'")
		}
		return b.String()
	}
	return "default-src 'none'; script-src 'self'" + hashes(inlineScript) +
		"; style-src" + hashes(inlineStyle) +
		"; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

// Handler serves GET and HEAD of /demo and /relay.js; any other path is 404.
// Mount it on those two routes.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	f, ok := files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	// Revalidate every time (a 304 is cheap), so a new binary's files are
	// seen at once.
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	if f.csp != "" {
		h.Set("Content-Security-Policy", f.csp)
		// The page URL may carry ?token=: never send it to anyone else.
		h.Set("Referrer-Policy", "no-referrer")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
