package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/relay/relay/internal/browsertest"
	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/testkit"
)

// wait bounds every wait for the page: generous, because the tests share two
// cores with a browser and with other packages' tests. Waits poll and return
// as soon as their condition holds.
const wait = 15 * time.Second

// post sends a JSON body to the node's API with an optional API key.
func post(t *testing.T, n *nodetest.Node, path, key, body string) (int, string) {
	t.Helper()
	status, raw := testkit.Do(t, http.MethodPost, n.URL()+path, key, body)
	return status, string(raw)
}

// The browser: one headless Chromium for the whole package, a tab per page.
var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	err    error
}

func browserContext(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(func() {
		browser.ctx, browser.cancel, browser.err = browsertest.Start()
	})
	if browser.err != nil {
		t.Fatal(browser.err)
	}
	return browser.ctx
}

func stopBrowser() {
	if browser.cancel != nil {
		browser.cancel()
	}
}

// page is one browser tab.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu      sync.Mutex
	console []string
	bad     []string // uncaught exceptions and CSP violations
}

// openPage opens url in a new tab and waits until it has loaded. The tab is
// closed when the test ends, and the test fails if the page threw an
// uncaught exception or broke its Content-Security-Policy.
func openPage(t *testing.T, name, url string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browserContext(t))
	p := &page{t: t, name: name, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // opens the tab
		cancel()
		t.Fatalf("%s: open a tab: %v", name, err)
	}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.console = append(p.console, fmt.Sprintf("%s: %s", m.Type, m))
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				p.bad = append(p.bad, m.String())
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, b := range p.bad {
			t.Errorf("%s: page error: %s", name, b)
		}
	})
	p.do("load "+url, chromedp.Navigate(url))
	return p
}

// do runs actions with a deadline.
func (p *page) do(desc string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, wait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.fail("%s: %v", desc, err)
	}
}

// eval evaluates a JavaScript expression and decodes its value into out.
func (p *page) eval(expr string, out any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, wait)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr))
	if err == nil && out != nil {
		err = json.Unmarshal(raw, out)
	}
	if err != nil {
		p.fail("eval %s: %v", expr, err)
	}
}

// waitFor polls a JavaScript expression until it is truthy.
func (p *page) waitFor(desc, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, wait+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(wait)))
	if err != nil {
		p.fail("waiting %v for %s: %v", wait, desc, err)
	}
}

// fail ends the test with what the page shows and what it logged.
func (p *page) fail(format string, args ...any) {
	p.t.Helper()
	var shown string
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	defer cancel()
	shown, _ = chromedp.Run(ctx, chromedp.Evaluate[string](
		`['state: ' + document.getElementById('state')?.textContent,
		  'rooms: ' + document.getElementById('rooms')?.innerText.replace(/\n/g, ' '),
		  'chat:\n' + document.getElementById('messages')?.innerText,
		  'notifications:\n' + document.getElementById('notifications')?.innerText,
		  'notify result: ' + document.getElementById('notify-result')?.innerText].join('\n')`))
	p.mu.Lock()
	console := strings.Join(p.console, "\n")
	p.mu.Unlock()
	p.t.Fatalf("%s: %s\n--- page\n%s\n--- console\n%s", p.name, fmt.Sprintf(format, args...), shown, console)
}

// typeInto types text into the input with this id.
func (p *page) typeInto(id, text string) {
	p.t.Helper()
	// chromedp.Clear only resets the value attribute, and SetValue cannot
	// set "": empty the field from JavaScript.
	p.eval(`document.getElementById(`+js(id)+`).value = ''`, nil)
	p.do("type into #"+id, chromedp.SendKeys(chromedp.ID(id), text))
}

func (p *page) click(css string) {
	p.t.Helper()
	p.do("click "+css, chromedp.Click(chromedp.CSS(css)))
}

// Page actions, as a user does them.

func (p *page) join(room string) {
	p.t.Helper()
	p.typeInto("join-room", room)
	p.click("#join-form button")
}

func (p *page) say(room, text string) {
	p.t.Helper()
	p.do("choose room "+room, chromedp.SetValue(chromedp.ID("send-room"), room))
	p.typeInto("text", text)
	p.click("#send-form button")
}

// Conditions on the page, as JavaScript expressions.

func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (p *page) waitState(state string) {
	p.t.Helper()
	p.waitFor("state "+state, `document.getElementById('state').dataset.state === `+js(state))
}

func (p *page) waitOnline(room string, n int) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("%d online in %s", n, room),
		`document.querySelector('#rooms li[data-room=`+js(room)+`] .online')?.dataset.online === '`+fmt.Sprint(n)+`'`)
}

func (p *page) waitMessage(room, user, text string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("message %q from %s in %s", text, user, room),
		`[...document.querySelectorAll('#messages li.msg')].some(li =>
			li.dataset.room === `+js(room)+` && li.dataset.user === `+js(user)+` &&
			li.querySelector('.text').textContent === `+js(text)+`)`)
}

func (p *page) waitLine(kind, contains string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("a %s line with %q", kind, contains),
		`[...document.querySelectorAll('#messages li.`+kind+`')].some(li => li.textContent.includes(`+js(contains)+`))`)
}

func (p *page) waitNotification(text, to string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("notification %q %s", text, to),
		`[...document.querySelectorAll('#notifications li')].some(li =>
			li.querySelector('.text').textContent === `+js(text)+` && li.querySelector('.to').textContent === `+js(to)+`)`)
}

func (p *page) text(id string) string {
	p.t.Helper()
	var s string
	p.eval(`document.getElementById(`+js(id)+`).textContent`, &s)
	return s
}
