package buffer

// Priority orders delivery and dropping: high entries (alerts) are read before
// normal ones and dropped after them.
type Priority uint8

const (
	PriorityNormal Priority = 0
	PriorityHigh   Priority = 1
)

// Entry is one committed output as the buffer stores it and hands it to uplinks.
//
// Payload is the JSON object of the output without the "gateway" and "seq"
// members; uplinks add those when they build the envelope (see
// uplink.AppendEnvelope), so the stored bytes never repeat what the entry
// already carries.
type Entry struct {
	Seq      uint64   // per-gateway, strictly increasing; assigned by Commit
	Rule     string   // the rule that produced the output
	Key      string   // the output's group key, joined with "\x00"; "" when ungrouped
	Priority Priority // delivery and drop order
	Routes   []string // uplink names this entry goes to; empty means every uplink
	Payload  []byte   // JSON object, see above
}

// RoutedTo reports whether the entry is meant for the named uplink.
func (e *Entry) RoutedTo(uplink string) bool {
	if len(e.Routes) == 0 {
		return true
	}
	for _, r := range e.Routes {
		if r == uplink {
			return true
		}
	}
	return false
}
