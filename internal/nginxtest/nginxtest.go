// Package nginxtest runs a real nginx (Debian's package, which
// deploy/test.sh installs) with the project's own configuration: the main
// config nginx/nginx.conf with its paths moved into the test's directory,
// and nginx/conf.d/relay.conf templated only for a loopback listen port, in
// front of relay nodes listed in an upstream block.
package nginxtest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relay/relay/internal/testkit"
)

// Server is an nginx process owned by one test.
type Server struct {
	Addr string // 127.0.0.1:port
	dir  string // its config, pid file and logs
}

// URL is the base URL, http://127.0.0.1:port.
func (s *Server) URL() string { return "http://" + s.Addr }

// WS is the WebSocket URL of /ws with query.
func (s *Server) WS(query string) string { return "ws://" + s.Addr + "/ws?" + query }

// Start runs nginx in front of the nodes (host:port each) and waits until
// it answers /healthz. It is stopped when the test ends.
func Start(t testing.TB, nodes ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			t.Fatal("nginx not found: run the tests with ./deploy/test.sh, which installs it")
		}
		bin = "/usr/sbin/nginx"
	}
	dir := t.TempDir()
	// Workers run as nobody when nginx is started by root: they write
	// request bodies under dir, so they must reach it through the test's
	// own temporary directory (0700) too.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: testkit.FreeAddr(t), dir: dir}

	conf, err := os.ReadFile(filepath.Join(repoRoot(t), "nginx", "conf.d", "relay.conf"))
	if err != nil {
		t.Fatal(err)
	}
	site := strings.Replace(string(conf), "listen 80;", "listen "+s.Addr+";", 1)
	if site == string(conf) {
		t.Fatal(`nginx/conf.d/relay.conf no longer has "listen 80;" for the test to template`)
	}
	var servers strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&servers, "    server %s max_fails=1 fail_timeout=2s;\n", n)
	}
	// As nginx/conf.d/upstream.conf's comment advises outside Docker; the
	// zone makes least_conn count over every worker, not each its own.
	upstream := "upstream relay_nodes {\n    zone relay_nodes 64k;\n    least_conn;\n" + servers.String() + "}\nmap $host $relay_upstream { default relay_nodes; }\n"
	main, err := mainConfig(repoRoot(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"nginx.conf": main, "upstream.conf": upstream, "relay.conf": site} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "nginx.conf"), "-p", dir, "-e", filepath.Join(dir, "error.log"))
	// A file, not a pipe: workers would hold a pipe open after the master
	// exits, and Wait would wait for them.
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
	go func() { _ = cmd.Wait(); close(exited) }() // joined in Cleanup
	logs := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "output"))
		e, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return string(b) + string(e)
	}
	t.Cleanup(func() {
		// Fast shutdown: a graceful one (SIGQUIT) waits on idle sockets.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(s.URL() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-exited:
			t.Fatalf("nginx exited:\n%s", logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx on %s did not answer: %v\n%s", s.Addr, err, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mainConfig is nginx/nginx.conf with what is tied to a machine-wide
// install rewritten for one test's directory: the pid file, the logs, the
// conf.d include (replaced by the test's upstream.conf and relay.conf) and
// temporary files; and nginx stays in the foreground. Everything else, the
// sizing included, is the shipped file.
func mainConfig(root, dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "nginx", "nginx.conf"))
	if err != nil {
		return "", err
	}
	conf := string(b)
	for _, r := range []struct{ old, new string }{
		{"pid /var/run/nginx.pid;", "pid " + dir + "/nginx.pid;"},
		{"error_log /var/log/nginx/error.log ", "error_log " + dir + "/error.log "},
		{"access_log /var/log/nginx/access.log ", "access_log " + dir + "/access.log "},
		{"include /etc/nginx/conf.d/*.conf;", fmt.Sprintf(`client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/upstream.conf;
    include %[1]s/relay.conf;`, dir)},
	} {
		if !strings.Contains(conf, r.old) {
			return "", fmt.Errorf("nginx/nginx.conf no longer has %q for the test to template", r.old)
		}
		conf = strings.Replace(conf, r.old, r.new, 1)
	}
	return "daemon off;\n" + conf, nil
}

// repoRoot finds the module root (where go.mod is) from the test's
// working directory, its package directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("nginxtest: no go.mod above the test's directory")
		}
		dir = parent
	}
}
