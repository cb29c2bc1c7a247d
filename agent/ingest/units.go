package ingest

import (
	"fmt"
	"sort"
	"strings"
)

// unit is a linear measure of one quantity: base = (v + offset) * num / den.
// Factors are kept as a fraction of exact decimals where they have one, so
// that a conversion multiplies by one rounded ratio (1 in is 25.4 mm, not
// 25.400000000000002).
type unit struct {
	quantity string
	offset   float64
	num, den float64
}

// units is the conversion table (README, "Input stage"): temperature in °C,
// pressure in Pa, speed in m/s, length in m are the bases.
var units = map[string]unit{
	"C": {"temperature", 0, 1, 1},
	"F": {"temperature", -32, 5, 9},
	"K": {"temperature", -273.15, 1, 1},

	"Pa":   {"pressure", 0, 1, 1},
	"hPa":  {"pressure", 0, 100, 1},
	"kPa":  {"pressure", 0, 1000, 1},
	"MPa":  {"pressure", 0, 1e6, 1},
	"mbar": {"pressure", 0, 100, 1},
	"bar":  {"pressure", 0, 1e5, 1},
	"psi":  {"pressure", 0, 6894.757293168361, 1}, // lbf/in², exact to float precision
	"inHg": {"pressure", 0, 3386.389, 1},          // at 0 °C

	"m/s":  {"speed", 0, 1, 1},
	"km/h": {"speed", 0, 1000, 3600},
	"mph":  {"speed", 0, 1609344, 3600000},
	"kn":   {"speed", 0, 1852, 3600},
	"ft/s": {"speed", 0, 3048, 10000},

	"mm": {"length", 0, 1, 1000},
	"cm": {"length", 0, 1, 100},
	"m":  {"length", 0, 1, 1},
	"km": {"length", 0, 1000, 1},
	"in": {"length", 0, 254, 10000},
	"ft": {"length", 0, 3048, 10000},
	"mi": {"length", 0, 1609344, 1000},
}

// unitAliases are other spellings of the same units.
var unitAliases = map[string]string{
	"°C": "C", "degC": "C", "°F": "F", "degF": "F",
	"kph": "km/h", "knot": "kn", "kt": "kn", "inch": "in",
}

// Conversion turns a value in one unit into another: out = (v + pre) *
// num / den + post.
type Conversion struct {
	pre, num, den, post float64
}

// Apply converts v.
func (c Conversion) Apply(v float64) float64 { return (v+c.pre)*c.num/c.den + c.post }

// UnitNames lists the units ParseConversion knows, by quantity.
func UnitNames() map[string][]string {
	m := map[string][]string{}
	for name, u := range units {
		m[u.quantity] = append(m[u.quantity], name)
	}
	for _, names := range m {
		sort.Strings(names)
	}
	return m
}

func lookupUnit(name string) (unit, bool) {
	if a, ok := unitAliases[name]; ok {
		name = a
	}
	u, ok := units[name]
	return u, ok
}

// ParseConversion reads "F->C", "psi->kPa": two units of one quantity.
func ParseConversion(spec string) (Conversion, error) {
	from, to, ok := strings.Cut(spec, "->")
	from, to = strings.TrimSpace(from), strings.TrimSpace(to)
	if !ok || from == "" || to == "" {
		return Conversion{}, fmt.Errorf("%q is not a conversion like F->C or psi->kPa", spec)
	}
	uf, ok := lookupUnit(from)
	if !ok {
		return Conversion{}, fmt.Errorf("unknown unit %q (known: %v)", from, UnitNames())
	}
	ut, ok := lookupUnit(to)
	if !ok {
		return Conversion{}, fmt.Errorf("unknown unit %q (known: %v)", to, UnitNames())
	}
	if uf.quantity != ut.quantity {
		return Conversion{}, fmt.Errorf("%s is a %s and %s a %s: no conversion", from, uf.quantity, to, ut.quantity)
	}
	// base = (v + uf.offset) * uf.num / uf.den; out = base * ut.den / ut.num - ut.offset
	return Conversion{pre: uf.offset, num: uf.num * ut.den, den: uf.den * ut.num, post: -ut.offset}, nil
}
