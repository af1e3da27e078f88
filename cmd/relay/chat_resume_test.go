package main

import (
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

// relay chat keeps its place in every stream: its connection is cut (a TCP
// proxy between it and the node, so the node and its history stay) while
// bob talks, and it resumes, shows what it missed once and in order, and
// says so; when more was said than the node keeps, it names the gap. It
// left lobby, and stays out of it after each resume.
func TestChatResumes(t *testing.T) {
	t.Parallel()
	node := startNode(t, "resume-node", "RELAY_RATE_LIMIT=0", "RELAY_HISTORY_SIZE=5")
	px := testkit.StartProxy(t, node.addr)
	chat := startChat(t, "ws://"+px.Addr+"/ws", "ann")
	chat.waitFor(t, "* connected to resume-node as ann, 1 online in lobby")
	chat.say("/join ops")
	chat.waitFor(t, "* ann joined ops (1 online)")
	chat.say("/leave lobby")
	chat.waitFor(t, "* ann left lobby (0 online)")

	bob := wstest.Dial(t, node.ws("name=bob"), nil)
	bob.Welcome()
	bob.Send(`{"type":"join","room":"ops"}`)
	bob.Expect("bob's join", wstest.IsEvent("join", "bob", "ops"))
	talk := func(texts ...string) {
		for _, text := range texts {
			bob.Send(`{"type":"message","room":"ops","data":"` + text + `"}`)
			bob.Expect(text, wstest.IsChat(text))
		}
	}
	talk("before")
	chat.waitFor(t, "[ops] bob: before")

	// Away: the link goes silent, then breaks; the reconnect is held.
	px.Blackhole()
	talk("away 1", "away 2")
	px.Cut()
	chat.waitCount(t, "reconnecting in", 1)
	talk("away 3")
	bob.Send(`{"type":"message","room":"lobby","data":"not for ann"}`)
	px.Heal()
	chat.waitFor(t, "* resumed: 3 missed messages recovered")
	talk("live 1")
	chat.waitFor(t, "[ops] bob: live 1")

	// Away for longer than the 5 messages history keeps.
	px.Blackhole()
	px.Cut()
	chat.waitCount(t, "reconnecting in", 2)
	talk("lost 1", "lost 2", "lost 3", "lost 4", "lost 5", "lost 6")
	px.Heal()
	chat.waitFor(t, "* resumed: 0 missed messages recovered; gap in ops: messages sent there while away are lost")
	talk("live 2")
	chat.waitFor(t, "[ops] bob: live 2")
	chat.say("in ops again")
	bob.Expect("ann's message", wstest.IsChat("in ops again"))

	out := chat.quit(t)
	var shown []string
	for _, line := range strings.Split(out, "\n") {
		if text, ok := strings.CutPrefix(line, "[ops] bob: "); ok {
			shown = append(shown, text)
		}
	}
	if want := "before,away 1,away 2,away 3,live 1,live 2"; strings.Join(shown, ",") != want {
		t.Errorf("bob's messages shown: %q, want each of %s once, in order\n%s", shown, want, out)
	}
	for _, absent := range []string{"not for ann", "already_member", "! "} {
		if strings.Contains(out, absent) {
			t.Errorf("output has %q (lobby rejoined, a room joined twice, or an error):\n%s", absent, out)
		}
	}
}

// chatProc is `relay chat` run from the real binary.
type chatProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *testkit.Buffer
}

func startChat(t *testing.T, url, name string) *chatProc {
	t.Helper()
	c := &chatProc{cmd: exec.Command(binary, "chat", url, "-name", name), out: &testkit.Buffer{}}
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
	})
	return c
}

func (c *chatProc) say(line string) { fmt.Fprintln(c.stdin, line) }

// waitFor waits until the output contains text.
func (c *chatProc) waitFor(t *testing.T, text string) {
	t.Helper()
	c.waitCount(t, text, 1)
}

// waitCount waits until the output contains text at least n times.
func (c *chatProc) waitCount(t *testing.T, text string, n int) {
	t.Helper()
	testkit.CheckFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		if got := strings.Count(c.out.String(), text); got < n {
			return fmt.Errorf("relay chat printed %q %d times, want %d:\n%s", text, got, n, c.out)
		}
		return nil
	})
}

// quit types /quit and returns the whole output once the client exited.
func (c *chatProc) quit(t *testing.T) string {
	t.Helper()
	c.say("/quit")
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("relay chat: %v\n%s", err, c.out)
	}
	return c.out.String()
}
