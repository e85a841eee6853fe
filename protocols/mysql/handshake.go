package mysql

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"

	gm "github.com/go-mysql-org/go-mysql/mysql"
)

// shimConn sits between a client connection and go-mysql's handshake and
// fills three gaps of go-mysql's server, on connections without TLS (with
// TLS it steps aside at the client's SSLRequest: what passes is encrypted,
// and needs none of this):
//
//   - the initial handshake offers the capabilities the proxy passes on to
//     the backend but go-mysql cannot offer (CLIENT_MULTI_STATEMENTS,
//     CLIENT_FOUND_ROWS …); clients such as go-sql-driver only use what is
//     offered;
//   - it reads the client's handshake response for the auth plugin the
//     client chose, so that the credential uses that plugin;
//   - caching_sha2_password's full authentication without TLS: go-mysql
//     only takes the password RSA-encrypted with OAEP padding. Clients
//     talking to a server whose version is below 8.0.5 (every MariaDB
//     version string) pad with PKCS#1 v1.5, and libmariadb sends the
//     password in clear over loopback, which it counts as secure. Such a
//     packet is re-encrypted with OAEP on its way in (a clear password
//     only from a loopback peer, as a server reached over a network must
//     not invite it).
//
// go-mysql runs the handshake on one goroutine, which is the only one
// that uses the shim's state; afterwards (off) the shim only passes bytes
// through, from any goroutine.
type shimConn struct {
	net.Conn
	key *rsa.PrivateKey

	off       atomic.Bool // TLS, or the handshake is over: hands off
	wrote     bool        // the initial handshake went out
	salt      []byte      // the last scramble the server sent
	resp      []byte
	respDone  bool
	plugin    string
	authEmpty bool
	known     bool
	// expectCipher is set after the server asked for the full
	// caching_sha2_password authentication or sent its public key: the
	// client's next packet may be an RSA-encrypted password.
	expectCipher bool
	pending      []byte
}

// offeredCaps are the capabilities added to go-mysql's initial handshake.
const offeredCaps = gm.CLIENT_FOUND_ROWS | gm.CLIENT_IGNORE_SPACE | gm.CLIENT_INTERACTIVE |
	gm.CLIENT_MULTI_STATEMENTS | gm.CLIENT_LOCAL_FILES | gm.CLIENT_MULTI_RESULTS | gm.CLIENT_PS_MULTI_RESULTS

func (c *shimConn) Write(p []byte) (int, error) {
	if c.off.Load() {
		return c.Conn.Write(p)
	}
	switch {
	case !c.wrote:
		c.wrote = true
		p = offerCaps(p)
		c.salt = handshakeSalt(p)
	case len(p) >= 6 && p[4] == gm.MORE_DATE_HEADER && (p[5] == gm.CACHE_SHA2_FULL_AUTH || p[5] == '-'):
		c.expectCipher = true
	case len(p) > 5 && p[4] == hdrEOF:
		// AuthSwitchRequest: plugin name, NUL, a new scramble, NUL.
		if i := bytes.IndexByte(p[5:], 0); i >= 0 && len(p) >= 5+i+1+20 {
			c.salt = append([]byte(nil), p[5+i+1:5+i+1+20]...)
		}
	}
	return c.Conn.Write(p)
}

// handshakeSalt returns the 20-byte scramble of an initial handshake
// packet (header included): 8 bytes, then 12 more after the flags.
func handshakeSalt(p []byte) []byte {
	if len(p) < 5 {
		return nil
	}
	nul := bytes.IndexByte(p[5:], 0)
	if nul < 0 {
		return nil
	}
	pos := 5 + nul + 1 + 4
	part2 := pos + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10
	if len(p) < part2+12 {
		return nil
	}
	return append(append([]byte(nil), p[pos:pos+8]...), p[part2:part2+12]...)
}

// offerCaps adds offeredCaps to an initial handshake packet (header
// included), leaving anything else untouched.
func offerCaps(p []byte) []byte {
	if len(p) < 5 || p[4] != 10 {
		return p
	}
	nul := bytes.IndexByte(p[5:], 0)
	if nul < 0 {
		return p
	}
	pos := 5 + nul + 1 + 4 + 8 + 1 // version, connection id, scramble, filler
	if len(p) < pos+7 {
		return p
	}
	out := append([]byte(nil), p...)
	lower := binary.LittleEndian.Uint16(out[pos:]) | uint16(offeredCaps&0xffff)
	upper := binary.LittleEndian.Uint16(out[pos+5:]) | uint16(offeredCaps>>16)
	binary.LittleEndian.PutUint16(out[pos:], lower)
	binary.LittleEndian.PutUint16(out[pos+5:], upper)
	return out
}

func (c *shimConn) Read(p []byte) (int, error) {
	if c.off.Load() && len(c.pending) == 0 {
		return c.Conn.Read(p)
	}
	if c.expectCipher && len(c.pending) == 0 {
		c.expectCipher = false
		pkt, err := readRawPacket(c.Conn)
		if err != nil {
			return 0, err
		}
		c.pending = c.reencrypt(pkt)
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	n, err := c.Conn.Read(p)
	if n > 0 && !c.respDone {
		c.feed(p[:n])
	}
	return n, err
}

// readRawPacket reads one packet, header included.
func readRawPacket(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
	if n > 64<<10 {
		n = 0 // not an auth packet: hand the header on, the rest follows as is
	}
	pkt := make([]byte, 4+n)
	copy(pkt, hdr[:])
	if _, err := io.ReadFull(r, pkt[4:]); err != nil {
		return nil, err
	}
	return pkt, nil
}

// reencrypt turns a PKCS#1 v1.5 RSA-encrypted password, or a clear one
// from a loopback peer, into an OAEP one (what go-mysql decrypts);
// anything else passes unchanged.
func (c *shimConn) reencrypt(pkt []byte) []byte {
	if c.key == nil {
		return pkt
	}
	payload := pkt[4:]
	if len(payload) != c.key.Size() {
		if len(payload) < 2 || payload[len(payload)-1] != 0 || !loopback(c.Conn.RemoteAddr()) || len(c.salt) != 20 {
			// The public key request (one byte) and anything else.
			return pkt
		}
		// password NUL, in clear: encrypt it as the client would have,
		// XORed with the scramble.
		oaep, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, &c.key.PublicKey, gm.Xor(payload, c.salt), nil)
		if err != nil {
			return pkt
		}
		return appendPacket(pkt[3], oaep)
	}
	cipher := payload
	if _, err := rsa.DecryptOAEP(sha1.New(), nil, c.key, cipher, nil); err == nil {
		return pkt
	}
	plain, err := rsa.DecryptPKCS1v15(nil, c.key, cipher)
	if err != nil {
		return pkt
	}
	oaep, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, &c.key.PublicKey, plain, nil)
	if err != nil {
		return pkt
	}
	return appendPacket(pkt[3], oaep)
}

// appendPacket frames a payload with sequence number seq.
func appendPacket(seq byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

// loopback says whether a peer is on this machine's loopback.
func loopback(a net.Addr) bool {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.IsLoopback()
	}
	return false
}

// feed collects the client's first packet, the handshake response.
func (c *shimConn) feed(b []byte) {
	c.resp = append(c.resp, b...)
	if len(c.resp) < 4 {
		return
	}
	n := int(c.resp[0]) | int(c.resp[1])<<8 | int(c.resp[2])<<16
	if n > 64<<10 {
		c.respDone, c.resp = true, nil
		return
	}
	if len(c.resp) < 4+n {
		return
	}
	if n == 32 {
		// SSLRequest: TLS follows.
		c.off.Store(true)
	} else {
		c.plugin, c.authEmpty, c.known = parseHandshakeResponse(c.resp[4 : 4+n])
	}
	c.respDone, c.resp = true, nil
}

// response returns the plugin the handshake response named, whether its
// auth data was empty, and whether the response was read at all.
func (c *shimConn) response() (plugin string, authEmpty, known bool) {
	return c.plugin, c.authEmpty, c.known
}
