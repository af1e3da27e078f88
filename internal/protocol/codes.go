package protocol

// ErrorCode is the machine-readable code in an error frame. Clients switch on
// it; the human text next to it may change between versions.
type ErrorCode string

// The error codes a client can receive. The README documents each one; keep
// the two in step.
const (
	ErrBadJSON       ErrorCode = "bad_json"       // a frame starting with '{' that is not a valid envelope
	ErrUnknownType   ErrorCode = "unknown_type"   // an envelope whose type relay does not know
	ErrBadMessage    ErrorCode = "bad_message"    // a chat message without data, or an empty text frame
	ErrBinary        ErrorCode = "binary"         // a binary frame: relay speaks JSON text frames
	ErrBadRoom       ErrorCode = "bad_room"       // a room name outside 1–64 of A-Z a-z 0-9 _ - . :
	ErrNotMember     ErrorCode = "not_member"     // a message to, or leave of, a room the client is not in
	ErrAlreadyMember ErrorCode = "already_member" // a join of a room the client is already in
	ErrTooManyRooms  ErrorCode = "too_many_rooms" // a join past MaxRooms
	ErrRateLimited   ErrorCode = "rate_limited"   // a frame past the connection's rate limit; it was dropped
	ErrBusy          ErrorCode = "busy"           // a frame past the connection's inbox (frames waiting for the broker); it was dropped
	ErrUnavailable   ErrorCode = "unavailable"    // the broker could not accept the message; it was not sent
	ErrUnconfirmed   ErrorCode = "unconfirmed"    // the broker did not confirm the message in time: it may or may not have been sent (the frame's id says which one)
	ErrTooLarge      ErrorCode = "too_large"      // the message, encoded for its receivers, would exceed the frame limit
	ErrForbidden     ErrorCode = "forbidden"      // a join or message the connection's permissions (token, guest rooms, room token) do not allow
)

// Error is a client mistake reported back in an error frame. It never closes
// the connection.
type Error struct {
	Code ErrorCode
	Text string
	// Request and Room, when set, say which client frame this answers:
	// its type and room (a refused join, send, leave or who).
	Request string
	Room    string
	// ID is the message's id, for an unconfirmed message: the client
	// looks it up to learn whether it was sent.
	ID string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Text }

// CloseCode is a WebSocket close status relay sends, with the short static
// reason that goes with it. Reasons stay static so that clients and dashboards
// can group on them.
type CloseCode struct {
	Status uint16
	Reason string
}

// The close codes relay sends itself. 1009 (message too big) comes from the
// WebSocket library when a frame exceeds the read limit, with the reason
// "read limited at N bytes"; 1013 when a connection cannot be set up.
var (
	CloseTooSlow        = CloseCode{1008, "too slow"}
	CloseRateLimited    = CloseCode{1008, "rate limit exceeded"}
	CloseServiceRestart = CloseCode{1012, "service restart"}
	CloseTryAgainLater  = CloseCode{1013, "try again later"}
	// CloseDisconnected: POST /api/disconnect closed the connection. The
	// reason is the API call's (this one when it gives none). Codes
	// 4000–4999 are final: relay's clients do not reconnect after them.
	CloseDisconnected = CloseCode{4000, "disconnected by the server"}
)

// MaxCloseReason is the longest close reason a WebSocket close frame can
// carry, in bytes (RFC 6455 §5.5: 125 bytes of payload, 2 of them the code).
const MaxCloseReason = 123

// MaxRooms is how many rooms one connection may be in at once, lobby counted.
const MaxRooms = 100

// Envelope is how much bigger than RELAY_MAX_MESSAGE_BYTES a frame relay
// sends may be: the fields around a message's data (type, room, user, id,
// ts, seq) and the frame header.
const Envelope = 1024

// Lobby is the room every connection starts in.
const Lobby = "lobby"

// MaxTokenBytes bounds a room token in a join frame.
const MaxTokenBytes = 4096
