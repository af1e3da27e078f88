package protocol_test

import (
	"encoding/json"
	"testing"

	"github.com/relay/relay/internal/protocol"
)

func BenchmarkDecodeChat(b *testing.B) {
	in := []byte(`{"type":"message","room":"lobby","data":"hello world"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		f, err := protocol.DecodeClient(in)
		if err != nil || f.Type != protocol.TypeMessage {
			b.Fatalf("DecodeClient: %+v, %v", f, err)
		}
	}
}

func BenchmarkEncodeChat(b *testing.B) {
	c := protocol.Chat{
		Type: protocol.TypeMessage,
		Room: "lobby",
		User: "ann",
		Data: json.RawMessage(`"hello world"`),
		ID:   "01HZX3K9Q8W7V6T5R4P3N2M1B0",
		TS:   1700000000123,
	}
	b.ReportAllocs()
	for b.Loop() {
		f, err := protocol.Encode(c)
		if err != nil || len(f) == 0 {
			b.Fatalf("Encode: %v", err)
		}
	}
}
