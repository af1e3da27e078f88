package bench

import "testing"

func TestWelcomeNode(t *testing.T) {
	for _, tc := range []struct{ frame, want string }{
		{`{"type":"system","event":"welcome","user":"b1","node":"relay-2","room":"lobby","online":3}`, "relay-2"},
		{`{"type":"system","event":"welcome","user":"b1"}`, ""},
		{`{"type":"system","event":"welcome","node":"cut`, ""},
	} {
		if got := welcomeNode([]byte(tc.frame)); got != tc.want {
			t.Errorf("welcomeNode(%s) = %q, want %q", tc.frame, got, tc.want)
		}
	}
}

func TestCountNodes(t *testing.T) {
	var conns []*conn
	for node, n := range map[string]int{"a": 100, "b": 90, "c": 110} {
		for range n {
			conns = append(conns, &conn{node: node})
		}
	}
	conns = append(conns, nil, &conn{}) // a failed dial, a node that did not say
	rep := &Report{}
	rep.countNodes(conns)
	if len(rep.Nodes) != 3 || rep.Nodes["a"] != 100 || rep.Nodes["c"] != 110 {
		t.Fatalf("nodes %v", rep.Nodes)
	}
	if rep.SpreadPercent != 10 {
		t.Fatalf("spread %.2f %%, want 10 (110 and 90 against a mean of 100)", rep.SpreadPercent)
	}
}
