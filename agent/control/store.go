package control

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/sluiceio/sluice/buffer"
)

// Store keeps the controller's small documents durably: the applied desired
// document and versions, the boot sequence, the command ids seen. Save must
// be durable when it returns nil (one fsynced transaction); a nil Value
// deletes its key. The controller calls it from one goroutine at a time.
type Store interface {
	Load(scope string) ([]buffer.KV, error)
	Save(scope string, kvs []buffer.KV) error
}

// Scopes and keys the controller uses in the Store.
const (
	ScopeState  = "control"         // keys below
	ScopeCmdIDs = "control.cmd-ids" // command id -> expires_at (unix ms, 8 bytes)

	keyApplied  = "applied"  // the applied desired document, as received
	keyVersions = "versions" // JSON {"own": N, "group/<g>": M}: highest version applied per source
	keyBootSeq  = "boot_seq" // 8 bytes, big endian
)

// BufferStore is a Store over the agent's buffer. It calls the function for
// each operation because the agent reopens its buffer when it applies a
// config.
type BufferStore func() *buffer.Buffer

// Load returns every key saved in scope.
func (f BufferStore) Load(scope string) ([]buffer.KV, error) { return f().LoadState(scope) }

// Save applies kvs to scope in one fsynced transaction.
func (f BufferStore) Save(scope string, kvs []buffer.KV) error {
	return f().Commit(&buffer.Commit{State: []buffer.StateChange{{Scope: scope, Puts: kvs}}})
}

// MemStore is a Store in memory, for tests and tools.
type MemStore struct {
	mu sync.Mutex
	m  map[string]map[string][]byte
}

// Load returns every key saved in scope.
func (s *MemStore) Load(scope string) ([]buffer.KV, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kvs []buffer.KV
	for k, v := range s.m[scope] {
		kvs = append(kvs, buffer.KV{Key: []byte(k), Value: append([]byte(nil), v...)})
	}
	return kvs, nil
}

// Save applies kvs to scope.
func (s *MemStore) Save(scope string, kvs []buffer.KV) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]map[string][]byte{}
	}
	if s.m[scope] == nil {
		s.m[scope] = map[string][]byte{}
	}
	for _, kv := range kvs {
		if kv.Value == nil {
			delete(s.m[scope], string(kv.Key))
			continue
		}
		s.m[scope][string(kv.Key)] = append([]byte(nil), kv.Value...)
	}
	return nil
}

// state is what the controller persists in ScopeState.
type state struct {
	applied  []byte           // desired document, nil when none
	versions map[string]int64 // per source
	bootSeq  uint64
}

func loadState(s Store) (state, error) {
	st := state{versions: map[string]int64{}}
	kvs, err := s.Load(ScopeState)
	if err != nil {
		return st, fmt.Errorf("control: load state: %w", err)
	}
	for _, kv := range kvs {
		switch string(kv.Key) {
		case keyApplied:
			st.applied = kv.Value
		case keyVersions:
			if err := json.Unmarshal(kv.Value, &st.versions); err != nil {
				return st, fmt.Errorf("control: load state: versions: %w", err)
			}
		case keyBootSeq:
			if len(kv.Value) == 8 {
				st.bootSeq = binary.BigEndian.Uint64(kv.Value)
			}
		}
	}
	return st, nil
}

// LastApplied returns the desired document the gateway last applied and its
// config member, or nil and nil when there is none. The agent boots on it
// when the broker cannot be reached (it is the last good config).
func LastApplied(s Store) (*Desired, []byte, error) {
	st, err := loadState(s)
	if err != nil || st.applied == nil {
		return nil, nil, err
	}
	var d Desired
	if err := json.Unmarshal(st.applied, &d); err != nil {
		return nil, nil, fmt.Errorf("control: applied document: %w", err)
	}
	return &d, d.Config, nil
}
