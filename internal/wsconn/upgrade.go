package wsconn

import (
	"bufio"
	"errors"
	"net"
	"net/http"
)

// Buffer sizes handed to coder/websocket at hijack. net/http's are 4 KiB
// each and stay allocated for the life of the connection; an idle
// connection needs neither. The read buffer only batches small frames
// (larger reads bypass it); the write buffer carries control frames only
// (at most 2+2+123 bytes for a close), so it always flushes a whole frame at
// once, which Conn.Write relies on (TestLibraryContract checks it).
const (
	readBufferSize    = 256
	controlBufferSize = 256
)

// Upgrade wraps w so that a WebSocket library's hijack yields a Conn of p.
// Pass the result to websocket.Accept, then call Conn.
type Upgrade struct {
	http.ResponseWriter
	pool *Pool
	conn *Conn
}

// Upgrade returns a ResponseWriter for websocket.Accept.
func (p *Pool) Upgrade(w http.ResponseWriter) *Upgrade {
	return &Upgrade{ResponseWriter: w, pool: p}
}

// Conn returns the connection created by the hijack, or nil if there was none.
func (u *Upgrade) Conn() *Conn { return u.conn }

// Hijack takes over the client's TCP connection.
func (u *Upgrade) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := u.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("wsconn: response writer cannot hijack")
	}
	raw, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	c := u.pool.newConn(raw)
	u.conn = c
	return c, libraryIO(c, brw.Reader), nil
}

// libraryIO is the reader and writer handed to the library with c, the
// hijacked connection; br is what net/http had read ahead. Kept apart so
// that TestLibraryContract gives the library exactly these.
func libraryIO(c net.Conn, br *bufio.Reader) *bufio.ReadWriter {
	if br.Buffered() == 0 {
		// Nothing read ahead: a small reader of our own will do. The
		// library points it at c, so reads pass the heartbeat's clock.
		br = bufio.NewReaderSize(c, readBufferSize)
	}
	return bufio.NewReadWriter(br, bufio.NewWriterSize(c, controlBufferSize))
}

// WriteHeaderNow is what gin needs to send the 101 before the hijack.
func (u *Upgrade) WriteHeaderNow() {
	if w, ok := u.ResponseWriter.(interface{ WriteHeaderNow() }); ok {
		w.WriteHeaderNow()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (u *Upgrade) Unwrap() http.ResponseWriter { return u.ResponseWriter }
