package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/nginxtest"
	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/wstest"
)

// The page through nginx, configured by the project's own
// nginx/conf.d/relay.conf, on a port other than 80: the page, relay.js, the
// WebSocket (whose Origin the node checks against the Host nginx passes on)
// and the notify API all work through it.
func TestDemoThroughNginx(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	lb := nginxtest.Start(t, n.Addr).URL()

	// What the browser will do: a handshake with the page's Origin.
	h := http.Header{"Origin": {lb}}
	c, err := wstest.TryDial(t, "ws"+strings.TrimPrefix(lb, "http")+"/ws?name=probe", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		if strings.Contains(err.Error(), "403") {
			t.Fatalf("through nginx, the node refuses a same-origin page (%v): nginx passes Host as $host, "+
				"which has no port, so it does not match the page's Origin %s. "+
				"nginx/conf.d/relay.conf needs: proxy_set_header Host $http_host;", err, lb)
		}
		t.Fatalf("handshake through nginx: %v", err)
	}
	c.Welcome()
	_ = c.WS.Close(websocket.StatusNormalClosure, "")

	p := openPage(t, "ivy", lb+"/demo?name=ivy")
	p.waitState("live")
	p.say("lobby", "through nginx")
	p.waitMessage("lobby", "ivy", "through nginx")
	p.typeInto("notify-message", "notified through nginx")
	p.click("#notify-form button")
	p.waitNotification("notified through nginx", "to everyone")
}
