package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nuid"

	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/uplink"
)

// The JetStream yardstick: what the same server takes from a bare publisher.
//
// floorPublisher speaks the NATS protocol on a plain TCP connection and sends
// the same fast batches as the uplink (the same subjects, reply subjects of
// the same form and length, envelopes, Nats-Msg-Id headers, batch sizes and
// flow control: three windows of the server's flow acks in flight), each message encoded straight into the
// connection's write buffer: no client library, no routes, no per-message
// locks. What it reaches is the server's figure for this load on this
// machine, which the uplink's is compared with, as the MQTT figures are with
// a bare paho subscriber.
type floorPublisher struct {
	conn  net.Conn
	w     *bufio.Writer
	inbox string

	mu      sync.Mutex
	cond    *sync.Cond
	batch   string // the reply prefix of the batch in flight
	acked   uint64 // its highest position the server stored, by flow ack
	window  uint64 // messages per flow ack, as the server set it
	count   uint64 // the commit's count, once it came
	done    bool   // the commit's PubAck came
	readErr error
}

// floorBatchTimeout bounds one fast batch of the bare publisher.
const floorBatchTimeout = 10 * time.Second

// floorReply is the part of the server's fast batch answers the yardstick
// reads: a flow ack ({"type":"ack"}), or the commit's PubAck (no type).
type floorReply struct {
	Type  string `json:"type"`
	Seq   uint64 `json:"seq"`
	Msgs  uint64 `json:"msgs"`
	Count uint64 `json:"count"`
	Error *struct {
		Description string `json:"description"`
	} `json:"error"`
}

func dialFloor(url string) (*floorPublisher, error) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "nats://"))
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "INFO ") {
		conn.Close()
		return nil, fmt.Errorf("nats handshake: %q, %v", line, err)
	}
	p := &floorPublisher{conn: conn, w: bufio.NewWriterSize(conn, 64<<10), inbox: "_INBOX." + nuid.Next()}
	p.cond = sync.NewCond(&p.mu)
	fmt.Fprintf(p.w, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\nSUB %s.> 1\r\nPING\r\n", p.inbox)
	if err := p.w.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	if line, err := r.ReadString('\n'); err != nil || line != "PONG\r\n" {
		conn.Close()
		return nil, fmt.Errorf("nats handshake: %q, %v", line, err)
	}
	go p.read(r)
	return p, nil
}

// read takes the server's answers until the connection closes.
func (p *floorPublisher) read(r *bufio.Reader) {
	err := func() error {
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return err
			}
			f := strings.Fields(string(line))
			if len(f) == 0 {
				continue
			}
			switch f[0] {
			case "PING":
				p.mu.Lock()
				if _, err = p.w.WriteString("PONG\r\n"); err == nil {
					err = p.w.Flush()
				}
				p.mu.Unlock()
				if err != nil {
					return err
				}
			case "+OK", "PONG", "INFO":
			case "MSG": // MSG <subject> <sid> <size>
				n, err := strconv.Atoi(f[len(f)-1])
				if len(f) != 4 || err != nil {
					return fmt.Errorf("unexpected %q", line)
				}
				body := make([]byte, n+2) // and CRLF
				if _, err := io.ReadFull(r, body); err != nil {
					return err
				}
				p.answer(f[1], body[:n])
			default:
				return fmt.Errorf("unexpected %q", line)
			}
		}
	}()
	p.mu.Lock()
	p.readErr = err
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *floorPublisher) answer(subject string, body []byte) {
	var a floorReply
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.batch == "" || !strings.HasPrefix(subject, p.batch) {
		return
	}
	if err := json.Unmarshal(body, &a); err != nil || a.Error != nil || a.Type == "gap" || a.Type == "err" {
		p.readErr = fmt.Errorf("fast batch answer %s", body)
	}
	switch a.Type {
	case "ack":
		p.acked, p.window = max(p.acked, a.Seq), max(a.Msgs, 1)
	case "":
		p.count, p.done = a.Count, true
	}
	p.cond.Broadcast()
}

// deliver sends batch as one fast batch and waits for its commit's PubAck.
func (p *floorPublisher) deliver(batch []buffer.Entry, subject string) error {
	p.mu.Lock()
	p.batch = p.inbox + "." + nuid.Next() + "."
	p.acked, p.window, p.count, p.done = 0, 1, 0, false
	prefix := p.batch
	p.mu.Unlock()
	// A flow ack or the PubAck may be lost: the batch fails rather than
	// the run hanging. A batch of ~4,000 takes a few tens of milliseconds.
	deadline := time.AfterFunc(floorBatchTimeout, func() {
		p.mu.Lock()
		if p.batch == prefix && !p.done && p.readErr == nil {
			p.readErr = fmt.Errorf("fast batch %s: no answer within %s", prefix, floorBatchTimeout)
			p.cond.Broadcast()
		}
		p.mu.Unlock()
	})
	defer deadline.Stop()

	var line, hdr, reply, env []byte
	for i := range batch {
		e := &batch[i]
		p.mu.Lock()
		for uint64(i) > p.acked+3*p.window && p.readErr == nil {
			if err := p.w.Flush(); err != nil {
				p.mu.Unlock()
				return err
			}
			p.cond.Wait()
		}
		if err := p.readErr; err != nil {
			p.mu.Unlock()
			return err
		}
		op := 1
		switch {
		case i == len(batch)-1:
			op = 2
		case i == 0:
			op = 0
		}
		reply = append(append(reply[:0], prefix...), "500.fail."...)
		reply = strconv.AppendUint(reply, uint64(i+1), 10)
		reply = append(strconv.AppendInt(append(reply, '.'), int64(op), 10), ".$FI"...)
		hdr = append(hdr[:0], "NATS/1.0\r\nNats-Msg-Id: "+gateway+"-"...)
		hdr = append(strconv.AppendUint(hdr, e.Seq, 10), "\r\n\r\n"...)
		env = uplink.AppendEnvelope(env[:0], gateway, e)
		line = append(append(append(append(line[:0], "HPUB "...), subject...), ' '), reply...)
		line = strconv.AppendInt(append(line, ' '), int64(len(hdr)), 10)
		line = append(strconv.AppendInt(append(line, ' '), int64(len(hdr)+len(env)), 10), "\r\n"...)
		p.w.Write(line)
		p.w.Write(hdr)
		p.w.Write(env)
		_, err := p.w.WriteString("\r\n")
		p.mu.Unlock()
		if err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.w.Flush(); err != nil {
		return err
	}
	for !p.done && p.readErr == nil {
		p.cond.Wait()
	}
	if p.readErr != nil {
		return p.readErr
	}
	if p.count != uint64(len(batch)) {
		return fmt.Errorf("fast batch %s: the stream stored %d of %d", prefix, p.count, len(batch))
	}
	return nil
}
