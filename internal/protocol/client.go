package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Client frame types.
const (
	TypeMessage = "message"
	TypeJoin    = "join"
	TypeLeave   = "leave"
	TypePing    = "ping"
	TypeWho     = "who"
)

// ClientFrame is one decoded, validated frame from a client.
type ClientFrame struct {
	Type string
	Room string          // set for message, join and leave
	Data json.RawMessage // set for message: any JSON value
	Last int             // join: how many of the room's latest messages to replay
	// Token, on a join: a room token (a JWT granting this one room to
	// this user).
	Token string
}

type clientEnvelope struct {
	Type  string          `json:"type"`
	Room  *string         `json:"room"`
	Data  json.RawMessage `json:"data"`
	Last  int             `json:"last"`
	Token *string         `json:"token"`
}

// DecodeClient decodes one text frame. A frame whose first non-whitespace
// byte is not '{' is a chat message to lobby carrying exactly that text, so
// that people typing into wscat or websocat can just chat; anything that
// starts with '{' must be a valid envelope.
func DecodeClient(b []byte) (ClientFrame, *Error) {
	// Browsers drop a connection that receives invalid UTF-8 in a text
	// frame (RFC 6455 §8.1): relaying it would disconnect a whole room.
	if !utf8.Valid(b) {
		return ClientFrame{}, &Error{Code: ErrBadMessage, Text: "text frames must be valid UTF-8"}
	}
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	if i == len(b) {
		return ClientFrame{}, &Error{Code: ErrBadMessage, Text: "empty message"}
	}
	if b[i] != '{' {
		return ClientFrame{Type: TypeMessage, Room: Lobby, Data: quoteText(b)}, nil
	}

	var env clientEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		return ClientFrame{}, &Error{Code: ErrBadJSON, Text: describeJSONError(err)}
	}
	f := ClientFrame{Type: env.Type}
	if env.Room != nil {
		f.Room = *env.Room
	}
	switch env.Type {
	case TypePing:
		return f, nil
	case TypeMessage:
		if env.Room == nil {
			f.Room = Lobby
		}
		if len(env.Data) == 0 || string(env.Data) == "null" {
			return ClientFrame{}, &Error{Code: ErrBadMessage, Text: "a message needs data"}
		}
		f.Data = env.Data
	case TypeJoin, TypeLeave, TypeWho:
		if env.Room == nil {
			return ClientFrame{}, &Error{Code: ErrBadRoom, Text: env.Type + " needs a room"}
		}
		if env.Last < 0 || env.Last > MaxLast || (env.Last != 0 && env.Type != TypeJoin) {
			return ClientFrame{}, &Error{Code: ErrBadJSON, Text: fmt.Sprintf("last: a join may ask for 0 to %d messages", MaxLast)}
		}
		f.Last = env.Last
		if env.Token != nil {
			if env.Type != TypeJoin || *env.Token == "" || len(*env.Token) > MaxTokenBytes {
				return ClientFrame{}, &Error{Code: ErrBadJSON, Text: fmt.Sprintf("token: a join may carry a room token of 1 to %d bytes", MaxTokenBytes)}
			}
			f.Token = *env.Token
		}
	case "":
		return ClientFrame{}, &Error{Code: ErrUnknownType, Text: "missing type"}
	default:
		return ClientFrame{}, &Error{Code: ErrUnknownType, Text: fmt.Sprintf("unknown type %q", truncate(env.Type, 32))}
	}
	if !ValidRoom(f.Room) {
		return ClientFrame{}, &Error{Code: ErrBadRoom, Text: "room names are 1-64 of A-Z a-z 0-9 _ - . :"}
	}
	return f, nil
}

// quoteText returns text as a JSON string, leaving <, > and & as they are
// so that terminal users read what was typed.
func quoteText(text []byte) json.RawMessage {
	var buf bytes.Buffer
	_ = writeJSON(&buf, string(text)) // a string always encodes
	return buf.Bytes()
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("field %q must be a %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()))
	}
	return "malformed JSON"
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string", "ptr":
		return "string"
	}
	return goKind
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
