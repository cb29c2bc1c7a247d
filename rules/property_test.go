package rules

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// naiveWindow is a window of a group as the reference computes it.
type naiveWindow struct {
	key    string
	ws, we time.Time
	rs     []*Record
}

// naiveWindows assigns in-order records to windows the slow, obvious way.
func naiveWindows(w Window, rs []*Record) []naiveWindow {
	byKey := map[string][]*Record{}
	for _, r := range rs {
		d, _ := r.Get("d")
		byKey[d.Str] = append(byKey[d.Str], r)
	}
	var out []naiveWindow
	for key, krs := range byKey {
		switch w.Kind {
		case Tumbling, Hopping:
			every := w.Every
			if w.Kind == Tumbling {
				every = w.Size
			}
			back := every * ((w.Size + every - 1) / every)
			first, last := krs[0].Time.Truncate(every).Add(-back), krs[len(krs)-1].Time
			for ws := first; !ws.After(last); ws = ws.Add(every) {
				nw := naiveWindow{key: key, ws: ws, we: ws.Add(w.Size)}
				for _, r := range krs {
					if !r.Time.Before(nw.ws) && r.Time.Before(nw.we) {
						nw.rs = append(nw.rs, r)
					}
				}
				if len(nw.rs) > 0 {
					out = append(out, nw)
				}
			}
		case Sliding:
			for i, r := range krs {
				nw := naiveWindow{key: key, ws: r.Time.Add(-w.Size), we: r.Time}
				for _, x := range krs[:i+1] {
					if x.Time.After(nw.ws) {
						nw.rs = append(nw.rs, x)
					}
				}
				out = append(out, nw)
			}
		case Session:
			var cur []*Record
			for i, r := range krs {
				cur = append(cur, r)
				if i == len(krs)-1 || krs[i+1].Time.Sub(r.Time) >= w.Gap {
					out = append(out, naiveWindow{key: key, ws: cur[0].Time, we: r.Time.Add(w.Gap), rs: cur})
					cur = nil
				}
			}
		case Count:
			for i := 0; i < len(krs); i += w.Count {
				part := krs[i:min(i+w.Count, len(krs))]
				out = append(out, naiveWindow{key: key, ws: part[0].Time, we: part[len(part)-1].Time, rs: part})
			}
		}
	}
	return out
}

// naiveAggs computes allAggs over a window's records.
func naiveAggs(rs []*Record) map[string]Value {
	var vs []float64
	var sum float64
	distinct := map[string]bool{}
	var inc float64
	for i, r := range rs {
		v, _ := r.Get("v")
		vs = append(vs, v.Num)
		sum += v.Num
		s, _ := r.Get("s")
		distinct[s.Str] = true
		if i > 0 {
			prev, _ := rs[i-1].Get("c")
			c, _ := r.Get("c")
			if c.Num < prev.Num {
				inc += c.Num
			} else {
				inc += c.Num - prev.Num
			}
		}
	}
	n := float64(len(vs))
	mean := sum / n
	var ss float64
	for _, v := range vs {
		ss += (v - mean) * (v - mean)
	}
	sorted := slices.Sorted(slices.Values(vs))
	last, _ := rs[len(rs)-1].Get("s")
	m := map[string]Value{
		"n": Number(n), "sum": Number(sum), "avg": Number(mean), "min": Number(sorted[0]), "max": Number(sorted[len(sorted)-1]),
		"first": Number(vs[0]), "last": last, "sd": Null, "p95": Number(sorted[int(0.95*(n-1))]),
		"distinct": Number(float64(len(distinct))), "delta": Number(inc), "rate": Null,
	}
	if n > 1 {
		m["sd"] = Number(math.Sqrt(ss / (n - 1)))
	}
	if dt := rs[len(rs)-1].Time.Sub(rs[0].Time).Seconds(); n > 1 && dt > 0 {
		m["rate"] = Number(inc / dt)
	}
	return m
}

func close(a, b Value, rel float64) bool {
	if a.Kind != KindNumber || b.Kind != KindNumber {
		return a == b
	}
	return math.Abs(a.Num-b.Num) <= rel*math.Max(1, math.Abs(b.Num))
}

// TestWindowsMatchReference compares every window kind and aggregate with
// the naive reference on random data; quantiles within the sketch's error.
func TestWindowsMatchReference(t *testing.T) {
	windows := []Window{
		{Kind: Tumbling, Size: 5 * time.Second},
		{Kind: Hopping, Size: 6 * time.Second, Every: 2 * time.Second},
		{Kind: Hopping, Size: 3 * time.Second, Every: 5 * time.Second}, // gaps between windows
		{Kind: Sliding, Size: 3 * time.Second},
		{Kind: Session, Gap: 1200 * time.Millisecond},
		{Kind: Count, Count: 6},
	}
	for _, w := range windows {
		for seed := uint64(1); seed <= 5; seed++ {
			rs := opRecords(seed, 800)
			rng := rand.New(rand.NewPCG(seed, 9))
			for i := 1; i < len(rs); i++ { // strictly increasing times
				rs[i].Time = rs[i-1].Time.Add(time.Millisecond + time.Duration(rng.IntN(500))*time.Millisecond)
			}
			p := mustCompile(t, Spec{Name: "p", GroupBy: []string{"d"}, Window: w, Select: allAggs})
			var out []Output
			for _, r := range rs {
				out = p.Process(r, out)
				out = p.Tick(r.Time, out)
			}
			out = p.Flush(out)
			got := map[string]Output{}
			for _, o := range out {
				got[fmt.Sprint(o.Key[0].Str, o.WindowStart.UnixNano(), o.WindowEnd.UnixNano())] = o
			}
			want := naiveWindows(w, rs)
			if len(got) != len(out) || len(out) != len(want) {
				t.Errorf("%v seed %d: %d outputs (%d distinct), want %d", w, seed, len(out), len(got), len(want))
				continue
			}
			for _, nw := range want {
				o, ok := got[fmt.Sprint(nw.key, nw.ws.UnixNano(), nw.we.UnixNano())]
				if !ok {
					t.Errorf("%v seed %d: no output for %s %v–%v", w, seed, nw.key, nw.ws, nw.we)
					continue
				}
				exp := naiveAggs(nw.rs)
				for _, f := range o.Values[1:] {
					tol := 1e-9
					if f.Name == "p95" {
						tol = sketchAlpha
					}
					if !close(f.Value, exp[f.Name], tol) {
						t.Errorf("%v seed %d %s %v: %s = %v, want %v", w, seed, nw.key, nw.ws, f.Name, f.Value, exp[f.Name])
					}
				}
			}
		}
	}
}

// TestSketchError checks the quantile sketch's relative error on skewed
// data, negative values and zeros, and that merging equals adding.
func TestSketchError(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var a, b, all sketch
	var xs []float64
	for i := 0; i < 20000; i++ {
		x := math.Exp(rng.NormFloat64()*3) * float64(1-2*rng.IntN(2))
		if i%100 == 0 {
			x = 0
		}
		xs = append(xs, x)
		all.add(x)
		if i%2 == 0 {
			a.add(x)
		} else {
			b.add(x)
		}
	}
	a.merge(&b)
	slices.Sort(xs)
	for _, q := range []float64{0, 0.01, 0.25, 0.5, 0.75, 0.95, 0.99, 1} {
		exact := xs[int(q*float64(len(xs)-1))]
		for _, s := range []*sketch{&all, &a} {
			if got := s.quantile(q); math.Abs(got-exact) > sketchAlpha*math.Abs(exact) {
				t.Errorf("q%v = %v, exact %v", q, got, exact)
			}
		}
	}
	var enc sketch
	if err := enc.decode(all.appendBinary(nil)); err != nil || enc.quantile(0.5) != all.quantile(0.5) || enc.n != all.n {
		t.Errorf("decode: %v", err)
	}
}
