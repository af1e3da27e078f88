package chatcli_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/relay/relay/internal/chatcli"
	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// relay chat against a node: /who lists the room's users, a removal and a
// forbidden join are shown, and POST /api/disconnect ends the session
// without a reconnect.
func TestChatWhoAndDisconnect(t *testing.T) {
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "k", "RELAY_GUEST_ROOMS": "ops"})
	bob := wstest.Dial(t, n.WS("name=bob"), nil)
	bob.Welcome()
	bob.SendJSON(map[string]any{"type": "join", "room": "ops"})
	bob.Expect("join", wstest.IsEvent("join", "bob", "ops"))

	in, typist := io.Pipe()
	out := &testkit.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- chatcli.Run(context.Background(), chatcli.Options{URL: n.WS(""), Name: "ann", MinDelay: 10 * time.Millisecond}, in, out)
	}()
	defer func() {
		typist.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("relay chat did not end")
		}
	}()
	waitOut := func(want string) {
		t.Helper()
		testkit.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if !strings.Contains(out.String(), want) {
				return fmt.Errorf("output lacks %q:\n%s", want, out)
			}
			return nil
		})
	}
	typeLine := func(line string) {
		t.Helper()
		if _, err := io.WriteString(typist, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	waitOut("* connected to")
	typeLine("/join staff")
	waitOut("! forbidden: you may not join room staff")
	typeLine("/join ops")
	waitOut("* ann joined ops (2 online)")
	typeLine("/who")
	waitOut("* in ops: 2 online: ann, bob")
	typeLine("/who lobby")
	waitOut("* in lobby: 2 online: ann, bob")

	post := func(path, body string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, n.URL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer k")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
	}
	post("/api/rooms/ops/remove", `{"user":"ann","reason":"quiet please"}`)
	waitOut("* ann removed from ops by the server: quiet please (1 online)")
	post("/api/disconnect", `{"user":"ann","reason":"bye"}`)
	select {
	case err := <-done:
		done <- err // for the deferred wait
		if err != nil {
			t.Fatalf("relay chat ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("relay chat still running after the disconnect:\n%s", out)
	}
	if s := out.String(); !strings.Contains(s, "* closed by the server: 4000 bye") || strings.Contains(s, "reconnecting") {
		t.Fatalf("output after the disconnect:\n%s", s)
	}
}
