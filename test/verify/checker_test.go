package verify

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"
)

// The checks must be able to fail: these feed them small histories with
// and without a violation, without any server.

func set(client int, key, val string, call, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: RegInput{Key: key, Write: true, Value: val}, Call: call, Output: RegOutput{}, Return: ret}
}

func get(client int, key, val string, call, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: RegInput{Key: key}, Call: call, Output: RegOutput{Value: val, Exists: val != ""}, Return: ret}
}

func TestRegisterModel(t *testing.T) {
	cases := []struct {
		name string
		hist func(h *History)
		want porcupine.CheckResult
	}{
		{"sequential", func(h *History) {
			h.Add(set(0, "x", "1", 0, 10))
			h.Add(get(1, "x", "1", 20, 30))
		}, porcupine.Ok},
		{"stale read after an acknowledged write", func(h *History) {
			h.Add(set(0, "x", "1", 0, 10))
			h.Add(set(0, "x", "2", 20, 30))
			h.Add(get(1, "x", "1", 40, 50))
		}, porcupine.Illegal},
		{"read of a value never written", func(h *History) {
			h.Add(get(1, "x", "9", 40, 50))
		}, porcupine.Illegal},
		{"concurrent write may or may not be seen", func(h *History) {
			h.Add(set(0, "x", "1", 0, 100))
			h.Add(get(1, "x", "", 10, 20))
			h.Add(get(2, "x", "1", 30, 40))
		}, porcupine.Ok},
		{"unknown write seen late", func(h *History) {
			h.Add(set(0, "x", "1", 0, 10))
			h.AddUnknown(porcupine.Operation{ClientId: 1, Input: RegInput{Key: "x", Write: true, Value: "2"}, Call: 20, Output: RegOutput{Unknown: true}})
			h.Add(get(2, "x", "1", 100, 110))
			h.Add(get(2, "x", "2", 200, 210))
		}, porcupine.Ok},
		{"unknown write never seen", func(h *History) {
			h.Add(set(0, "x", "1", 0, 10))
			h.AddUnknown(porcupine.Operation{ClientId: 1, Input: RegInput{Key: "x", Write: true, Value: "2"}, Call: 20, Output: RegOutput{Unknown: true}})
			h.Add(get(2, "x", "1", 100, 110))
		}, porcupine.Ok},
		{"unknown write seen, then lost", func(h *History) {
			h.Add(set(0, "x", "1", 0, 10))
			h.AddUnknown(porcupine.Operation{ClientId: 1, Input: RegInput{Key: "x", Write: true, Value: "2"}, Call: 20, Output: RegOutput{Unknown: true}})
			h.Add(get(2, "x", "2", 100, 110))
			h.Add(get(2, "x", "1", 200, 210))
		}, porcupine.Illegal},
		{"keys are independent", func(h *History) {
			h.Add(set(0, "x", "1", 0, 10))
			h.Add(set(0, "y", "2", 20, 30))
			h.Add(get(1, "x", "1", 40, 50))
			h.Add(get(1, "y", "2", 40, 50))
		}, porcupine.Ok},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h History
			c.hist(&h)
			if got := porcupine.CheckOperationsTimeout(RegisterModel, h.Operations(), 10*time.Second); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
}

func TestAppendCheck(t *testing.T) {
	var a AppendLog
	a.Add("l0", "a0.1", 0, 1, OK)
	a.Add("l0", "a0.2", 0, 2, OK)      // lost
	a.Add("l0", "a0.3", 0, 3, Unknown) // applied
	a.Add("l0", "a0.4", 0, 4, NotExecuted)
	a.Add("l0", "a0.5", 0, 5, OK)
	a.Add("l1", "a1.1", 1, 1, OK)
	a.Add("l1", "a1.2", 1, 2, OK)
	r := a.Check(map[string][]string{
		"l0": {"a0.1", "a0.3", "a0.4", "a0.5", "a0.5", "zz"},
		"l1": {"a1.2", "a1.1"},
	})
	check := func(what string, got []string, want ...string) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
	}
	check("lost", r.Lost, "l0/a0.2")
	check("duplicated", r.Duplicated, "a0.5")
	check("phantoms", r.Phantoms, "l0/a0.4", "l0/zz")
	check("reordered", r.Reordered, "a1.1")
	if r.Sent != 7 || r.Acked != 5 || r.Unknown != 1 || r.NotExecuted != 1 || r.UnknownPresent != 1 {
		t.Errorf("counts: %+v", r)
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want Outcome
	}{
		{nil, OK},
		{redis.Nil, OK},
		{redisErr("TRYAGAIN no leader available after waiting 5s (no leader elected); the command was not executed"), NotExecuted},
		{redisErr("NOREPLICAS Not enough good replicas to write. (isr 1 < 2)"), NotExecuted},
		{redisErr("ERR backend unavailable: dial tcp: connection refused"), NotExecuted},
		{redisErr("ERR backend unavailable: EOF (the connection failed after the write was sent: it may have been executed)"), Unknown},
		{redisErr("UNCOMMITTED write applied on the primary but not replicated under the ack policy within the ack timeout"), Unknown},
		{redisErr("ERR replicar: connection to the leader lost with the command in flight; it may have been executed: EOF"), Unknown},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, NotExecuted},
		{&net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, Unknown},
		{io.EOF, Unknown},
		{redisErr("ERR something else"), Unknown},
	}
	for _, c := range cases {
		if got, kind := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %s (%s), want %s", c.err, got, kind, c.want)
		}
	}
}

// redisErr is a server error reply as go-redis returns it.
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

// The proxies cut and heal: a blackholed link passes no byte but keeps the
// connection, a refusing one refuses, and a healed one carries new
// connections again.
func TestLinkCutHeal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	n := NewNet()
	defer n.Close()
	l, err := n.Add("echo", "127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	echo := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err := io.ReadFull(c, buf)
		return err
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", l.Listen, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := dial()
	if err := echo(c); err != nil {
		t.Fatalf("echo through a healed link: %v", err)
	}
	if err := l.Cut(Blackhole); err != nil {
		t.Fatal(err)
	}
	if err := echo(c); err == nil {
		t.Fatal("an echo passed a blackholed link")
	}
	c2 := dial() // accepted, but silent
	if err := echo(c2); err == nil {
		t.Fatal("an echo passed a blackholed link on a new connection")
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c2.Close()
	c = dial()
	if err := echo(c); err != nil {
		t.Fatalf("echo after healing: %v", err)
	}
	if err := l.Cut(Refuse); err != nil {
		t.Fatal(err)
	}
	if err := echo(c); err == nil {
		t.Fatal("an echo passed a refusing link")
	}
	if c, err := net.DialTimeout("tcp", l.Listen, time.Second); err == nil {
		c.Close()
		t.Fatal("a refusing link accepted a connection")
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	c = dial()
	defer c.Close()
	if err := echo(c); err != nil {
		t.Fatalf("echo after healing a refusal: %v", err)
	}
}
