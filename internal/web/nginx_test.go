package web_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/wstest"
)

// The page through nginx, configured by the project's own
// nginx/conf.d/relay.conf, on a port other than 80: the page, relay.js, the
// WebSocket (whose Origin the node checks against the Host nginx passes on)
// and the notify API all work through it.
func TestDemoThroughNginx(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	lb := startNginx(t, n.addr)

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

// startNginx runs nginx with the project's relay.conf on a free loopback
// port in front of the nodes, and returns its base URL.
func startNginx(t *testing.T, nodes ...string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			t.Fatal("nginx not found: run the tests with ./deploy/test.sh, which installs it")
		}
		bin = "/usr/sbin/nginx"
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil { // nginx workers run as nobody when started by root
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	conf, err := os.ReadFile("../../nginx/conf.d/relay.conf")
	if err != nil {
		t.Fatal(err)
	}
	site := strings.Replace(string(conf), "listen 80;", "listen "+addr+";", 1)
	if site == string(conf) {
		t.Fatal(`nginx/conf.d/relay.conf no longer has "listen 80;" for the test to template`)
	}
	var servers strings.Builder
	for _, a := range nodes {
		fmt.Fprintf(&servers, "    server %s;\n", a)
	}
	upstream := "upstream relay_nodes {\n" + servers.String() + "}\nmap $host $relay_upstream { default relay_nodes; }\n"
	main := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/upstream.conf;
    include %[1]s/relay.conf;
}
`, dir)
	for name, body := range map[string]string{"nginx.conf": main, "upstream.conf": upstream, "relay.conf": site} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "nginx.conf"), "-p", dir, "-e", filepath.Join(dir, "error.log"))
	// A file, not a pipe: the workers would hold a pipe open after the
	// master exits, and Wait would wait for them.
	out, err := os.Create(filepath.Join(dir, "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	logs := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "output"))
		e, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return string(b) + string(e)
	}
	t.Cleanup(func() {
		// Fast shutdown: a graceful one (SIGQUIT) waits on the browser's idle sockets.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	url := "http://" + addr
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		select {
		case <-exited:
			t.Fatalf("nginx exited:\n%s", logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx on %s did not answer: %v\n%s", addr, err, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
