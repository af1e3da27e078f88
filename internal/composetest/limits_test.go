package composetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// lowDaemonLimit is the lowest open-files limit of a Docker daemon the
// shipped files must start under: this test machine's dockerd runs with
// LimitNOFILE=20000. A container's ulimit above the daemon's own fails
// `docker compose up` with "error setting rlimit type 7: operation not
// permitted" wherever the engine cannot raise limits.
const lowDaemonLimit = 20000

// TestShippedOpenFilesFitTheDaemon reads the shipped docker-compose.yml,
// .env.example and nginx/nginx.conf, without Docker: every open-files
// limit compose asks for fits under the daemon's limit (this host's, and
// never above lowDaemonLimit), .env.example says the same default as the
// compose file, and nginx's per-worker limits fit inside its container's.
func TestShippedOpenFilesFitTheDaemon(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	limit, from := daemonOpenFiles()
	if limit > lowDaemonLimit {
		limit, from = lowDaemonLimit, from+", capped at the lowest known daemon's (this test machine's LimitNOFILE=20000)"
	}
	t.Logf("Docker daemon open-files limit: %d (%s)", limit, from)

	// ulimits: nofile: N, nofile: ${VAR:-N}, or soft:/hard: under nofile.
	compose := read("docker-compose.yml")
	values := regexp.MustCompile(`(?m)^\s*(nofile|soft|hard):\s*(\S+)\s*$`).FindAllStringSubmatch(compose, -1)
	if len(values) == 0 {
		t.Fatal("docker-compose.yml sets no nofile ulimit: containers would get the engine's default, which differs between engines")
	}
	nofile := 0 // the smallest a container gets
	for _, v := range values {
		n, err := composeDefault(v[2])
		if err != nil {
			t.Errorf("docker-compose.yml: %s: %v", strings.TrimSpace(v[0]), err)
			continue
		}
		if n > limit {
			t.Errorf("docker-compose.yml asks for %s = %d open files, above the daemon's %d: `docker compose up` fails with \"error setting rlimit type 7\"", v[1], n, limit)
		}
		if nofile == 0 || n < nofile {
			nofile = n
		}
	}

	env := regexp.MustCompile(`(?m)^RELAY_NOFILE=(\d+)$`).FindStringSubmatch(read(".env.example"))
	if env == nil {
		t.Error(".env.example has no RELAY_NOFILE= line")
	} else if n, _ := strconv.Atoi(env[1]); n != nofile {
		t.Errorf(".env.example says RELAY_NOFILE=%d, the compose file's default is %d", n, nofile)
	}

	nginx := read("nginx/nginx.conf")
	rlimit := directive(t, nginx, "worker_rlimit_nofile")
	conns := directive(t, nginx, "worker_connections")
	if rlimit > nofile {
		t.Errorf("nginx.conf: worker_rlimit_nofile %d above the container's nofile %d: nginx logs setrlimit failed and workers keep the lower limit", rlimit, nofile)
	}
	// A worker also holds its listeners, log files and the like.
	if conns > rlimit-100 {
		t.Errorf("nginx.conf: worker_connections %d does not fit in worker_rlimit_nofile %d with room for listeners and logs", conns, rlimit)
	}
}

// composeDefault is the value compose uses for v, a number or ${VAR:-N}
// with VAR unset.
func composeDefault(v string) (int, error) {
	if m := regexp.MustCompile(`^\$\{[A-Z_]+:-(\d+)\}$`).FindStringSubmatch(v); m != nil {
		v = m[1]
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// directive returns the number of nginx directive name in conf.
func directive(t *testing.T, conf, name string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + name + `\s+(\d+);`).FindStringSubmatch(conf)
	if m == nil {
		t.Fatalf("nginx.conf has no %s", name)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// daemonOpenFiles is dockerd's hard open-files limit and where it was
// read: its /proc limits, else systemd's unit, else lowDaemonLimit.
func daemonOpenFiles() (int, string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, comm := range procs {
		if b, err := os.ReadFile(comm); err != nil || strings.TrimSpace(string(b)) != "dockerd" {
			continue
		}
		limits := filepath.Join(filepath.Dir(comm), "limits")
		b, err := os.ReadFile(limits)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(strings.TrimPrefix(line, "Max open files")); strings.HasPrefix(line, "Max open files") && len(f) >= 2 {
				if f[1] == "unlimited" {
					return 1 << 30, limits
				}
				if n, err := strconv.Atoi(f[1]); err == nil {
					return n, limits
				}
			}
		}
	}
	if out, err := exec.Command("systemctl", "show", "docker", "-p", "LimitNOFILE", "--value").Output(); err == nil {
		v := strings.TrimSpace(string(out))
		if v == "infinity" {
			return 1 << 30, "systemctl show docker"
		}
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n, "systemctl show docker"
		}
	}
	return lowDaemonLimit, "dockerd not found: assumed"
}
