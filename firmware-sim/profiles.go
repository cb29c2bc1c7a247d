package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Profile is the kind of device a simulated device is. Each profile has its
// own payload fields between "device" and "ts"; TempHum is workload W1.
type Profile uint8

const (
	TempHum   Profile = iota // {"device":..,"temperature":23.4,"humidity":41.2,"ts":..}
	Vibration                // {"device":..,"rms":1.23,"peak":3.10,"bands":[..8..],"ts":..}
	Power                    // {"device":..,"power_w":812.4,"energy_wh":10234.5,"voltage":230.1,"ts":..}
	Door                     // {"device":..,"open":false,"changes":3,"ts":..}
	Motion                   // {"device":..,"motion":true,"events":12,"ts":..}
	GPS                      // {"device":..,"lat":52.520008,"lon":13.404954,"speed_kmh":42.1,"heading":87,"ts":..}
	numProfiles
)

// profileInfo describes a profile to the fleet: the primary field is the one
// spikes, level shifts and out-of-range values act on.
type profileInfo struct {
	name    string
	primary string  // JSON key of the primary value
	prec    int     // decimals of the primary value
	scale   float64 // typical variation of the primary value; faults are multiples of it (0: none)
	// bad is the out-of-range primary value a malformed payload carries.
	bad      float64
	newModel func(rng *rand.Rand) model
}

var profiles = [numProfiles]profileInfo{
	TempHum:   {"temphum", "temperature", 1, 1, 999.9, newTempHum},
	Vibration: {"vibration", "rms", 2, 0.5, -1, newVibration},
	Power:     {"power", "power_w", 1, 100, -99999.9, newPower},
	Door:      {"door", "open", -1, 0, 2, newDoor},
	Motion:    {"motion", "motion", -1, 0, 2, newMotion},
	GPS:       {"gps", "speed_kmh", 1, 10, -50, newGPS},
}

func (p Profile) String() string { return profiles[p].name }

// ParseProfile returns the profile called name.
func ParseProfile(name string) (Profile, error) {
	for i := range profiles {
		if profiles[i].name == name {
			return Profile(i), nil
		}
	}
	names := make([]string, numProfiles)
	for i := range profiles {
		names[i] = profiles[i].name
	}
	return 0, fmt.Errorf("unknown profile %q (want one of %s)", name, strings.Join(names, ", "))
}

// valueMode selects how a model writes its primary value.
type valueMode uint8

const (
	modeNormal     valueMode = iota
	modeWrongType            // the primary value as a JSON string
	modeOutOfRange           // the profile's impossible value instead of the reading
)

// model is one device's physical process. Models are called only by the
// Fleet, from one goroutine.
type model interface {
	// step advances the process to tsMillis, dt seconds after the previous
	// reading. It reports whether a notable event of the device happened
	// (a power meter's counter reset).
	step(rng *rand.Rand, tsMillis int64, dt float64) bool
	// primary returns the current primary value, unrounded and without
	// faults (0 for profiles without one).
	primary() float64
	// appendFields appends the payload fields after "device", each preceded
	// by a comma. v is the primary value to write (already offset by faults
	// and rounded); mode may replace it by a wrong one.
	appendFields(dst []byte, v float64, mode valueMode) []byte
}

// dayPhase returns sin of the (local) time of day shifted so that it peaks at
// 15:00 and is lowest at 03:00.
func dayPhase(tsMillis int64) float64 {
	const day = 86400000
	frac := float64(((tsMillis%day)+day)%day) / day
	return math.Sin(2 * math.Pi * (frac - 9.0/24))
}

// appendNum appends v with prec decimals, as a JSON number or, in
// modeWrongType, as a string.
func appendNum(dst []byte, v float64, prec int, mode valueMode) []byte {
	if mode == modeWrongType {
		dst = append(dst, '"')
		dst = strconv.AppendFloat(dst, v, 'f', prec, 64)
		return append(dst, '"')
	}
	return strconv.AppendFloat(dst, v, 'f', prec, 64)
}

// roundTo rounds v to prec decimals, avoiding "-0.0".
func roundTo(v float64, prec int) float64 {
	if prec < 0 {
		return v
	}
	p := math.Pow10(prec)
	v = math.Round(v*p) / p
	if v == 0 {
		return 0
	}
	return v
}

// ou advances an Ornstein–Uhlenbeck drift x by one step.
func ou(x, revert, step float64, rng *rand.Rand) float64 {
	return x - revert*x + step*rng.NormFloat64()
}

// TempHum device constants. Temperature is a per-device base (15–30 °C), a
// daily cycle of per-device amplitude (0.5–2.5 °C, peak at 15:00 UTC), a slow
// mean-reverting drift (Ornstein–Uhlenbeck, about ±0.7 °C, time constant
// ~200 readings) and sensor noise; humidity is the same shape around a
// per-device base of 35–55 %, moving against the temperature's daily cycle,
// clamped to 30–60 %.
const (
	tempBaseMin, tempBaseSpan = 15.0, 15.0
	tempRevert, tempStep      = 0.005, 0.07 // drift std = step/sqrt(2·revert) ≈ 0.7
	tempNoise                 = 0.1
	tempDayMin, tempDaySpan   = 0.5, 2.0

	humBaseMin, humBaseSpan = 35.0, 20.0
	humRevert, humStep      = 0.01, 0.3 // drift std ≈ 2.1
	humNoise                = 0.2
	humMin, humMax          = 30.0, 60.0
	humPerDegree            = 1.5 // humidity points lost per degree of daily warming
)

type tempHum struct {
	tempBase, temp, dayAmp float64 // temp is the current drift
	humBase, hum           float64
	t, h                   float64 // current reading, before faults
}

func newTempHum(rng *rand.Rand) model {
	return &tempHum{
		tempBase: tempBaseMin + tempBaseSpan*rng.Float64(),
		temp:     tempStep / math.Sqrt(2*tempRevert) * rng.NormFloat64(),
		humBase:  humBaseMin + humBaseSpan*rng.Float64(),
		hum:      humStep / math.Sqrt(2*humRevert) * rng.NormFloat64(),
		dayAmp:   tempDayMin + tempDaySpan*rng.Float64(),
	}
}

func (m *tempHum) step(rng *rand.Rand, ts int64, _ float64) bool {
	m.temp = ou(m.temp, tempRevert, tempStep, rng)
	m.hum = ou(m.hum, humRevert, humStep, rng)
	day := m.dayAmp * dayPhase(ts)
	m.t = m.tempBase + day + m.temp + tempNoise*rng.NormFloat64()
	m.h = min(max(m.humBase-humPerDegree*day+m.hum+humNoise*rng.NormFloat64(), humMin), humMax)
	return false
}

func (m *tempHum) primary() float64 { return m.t }

func (m *tempHum) appendFields(dst []byte, v float64, mode valueMode) []byte {
	dst = append(dst, `,"temperature":`...)
	dst = appendNum(dst, v, 1, mode)
	dst = append(dst, `,"humidity":`...)
	return strconv.AppendFloat(dst, roundTo(m.h, 1), 'f', 1, 64)
}

// Vibration: a rotating machine seen by an accelerometer that reports the
// velocity RMS (mm/s) in 8 frequency bands, their total and a peak. The
// machine runs on a shift pattern (06:00–22:00 UTC, per-device offset), its
// load wanders, and a slow wear process raises the high bands over time.
const vibBands = 8

type vibration struct {
	base       [vibBands]float64 // band levels at full load, no wear
	bands      [vibBands]float64
	load, wear float64
	shiftStart float64 // hour the shift starts
	crest      float64
	rms        float64
}

func newVibration(rng *rand.Rand) model {
	m := &vibration{
		load:       0.8,
		shiftStart: 5 + 2*rng.Float64(),
		crest:      1.5 + rng.Float64(),
	}
	// A spectrum falling off from the running speed (band 1) with a
	// per-machine imbalance and a structural resonance.
	res := 2 + rng.IntN(4)
	for b := range m.base {
		m.base[b] = 1.2 / (1 + math.Abs(float64(b-1))) * (0.6 + 0.8*rng.Float64())
		if b == res {
			m.base[b] *= 1.5
		}
	}
	return m
}

func (m *vibration) step(rng *rand.Rand, ts int64, _ float64) bool {
	hour := float64(((ts%86400000)+86400000)%86400000) / 3600000
	running := hour >= m.shiftStart && hour < m.shiftStart+16
	m.load = min(max(m.load+0.01*rng.NormFloat64(), 0.5), 1.1)
	m.wear += 2e-5 * rng.Float64()
	var sum float64
	for b := range m.bands {
		v := 0.01 + 0.003*math.Abs(rng.NormFloat64()) // noise floor
		if running {
			w := 1.0
			if b >= 5 {
				w += m.wear * float64(b-4)
			}
			v += m.base[b] * m.load * w * (1 + 0.05*rng.NormFloat64())
		}
		m.bands[b] = max(v, 0.005)
		sum += m.bands[b] * m.bands[b]
	}
	m.rms = math.Sqrt(sum)
	return false
}

func (m *vibration) primary() float64 { return m.rms }

func (m *vibration) appendFields(dst []byte, v float64, mode valueMode) []byte {
	dst = append(dst, `,"rms":`...)
	dst = appendNum(dst, v, 2, mode)
	// Faults on the total scale the spectrum with it.
	k := 1.0
	if mode == modeNormal && m.rms > 0 && v > 0 {
		k = v / m.rms
	}
	dst = append(dst, `,"peak":`...)
	dst = strconv.AppendFloat(dst, roundTo(max(v, 0)*m.crest, 2), 'f', 2, 64)
	dst = append(dst, `,"bands":[`...)
	for b := range m.bands {
		if b > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendFloat(dst, roundTo(m.bands[b]*k, 3), 'f', 3, 64)
	}
	return append(dst, ']')
}

// Power: a metered load with a per-device size (0.2–5 kW), a daily profile
// (night 40 %, day 100 %), a wandering drift and noise; energy_wh is a
// monotonic counter of the energy used that resets to 0 now and then (a
// meter replaced or rebooted), and voltage wanders around 230 V.
type power struct {
	size, drift, p, energy, volt float64
	resetRate                    float64
}

// DefaultResetRate is the chance per reading that a power meter's energy
// counter resets to 0.
const DefaultResetRate = 1e-4

func newPower(rng *rand.Rand) model {
	return &power{size: 200 + 4800*rng.Float64(), energy: 1e5 * rng.Float64(), volt: 230, resetRate: DefaultResetRate}
}

func (m *power) step(rng *rand.Rand, ts int64, dt float64) bool {
	m.drift = ou(m.drift, 0.02, 0.03, rng)
	day := 0.7 + 0.3*dayPhase(ts)
	m.p = max(m.size*(day+m.drift)*(1+0.03*rng.NormFloat64()), 0)
	m.volt = 230 + ou(m.volt-230, 0.1, 0.5, rng)
	if rng.Float64() < m.resetRate {
		m.energy = 0
		return true
	}
	m.energy += m.p * dt / 3600
	return false
}

func (m *power) primary() float64 { return m.p }

func (m *power) appendFields(dst []byte, v float64, mode valueMode) []byte {
	dst = append(dst, `,"power_w":`...)
	dst = appendNum(dst, v, 1, mode)
	dst = append(dst, `,"energy_wh":`...)
	dst = strconv.AppendFloat(dst, math.Floor(m.energy*10)/10, 'f', 1, 64) // floor keeps it monotonic
	dst = append(dst, `,"voltage":`...)
	return strconv.AppendFloat(dst, roundTo(m.volt, 1), 'f', 1, 64)
}

// Switch: a door contact or a motion detector. It reports its state on every
// turn; the state changes more often in the daytime. A door stays open for a
// few readings; motion is short.
type switchModel struct {
	key, countKey string
	on            bool
	count         int64
	pOn, pOff     float64
}

func newDoor(*rand.Rand) model {
	return &switchModel{key: "open", countKey: "changes", pOn: 0.02, pOff: 0.3}
}

func newMotion(*rand.Rand) model {
	return &switchModel{key: "motion", countKey: "events", pOn: 0.05, pOff: 0.6}
}

func (m *switchModel) step(rng *rand.Rand, ts int64, _ float64) bool {
	activity := 0.55 + 0.45*dayPhase(ts) // 0.1 at night .. 1 in the afternoon
	if m.on {
		if rng.Float64() < m.pOff {
			m.on = false
		}
	} else if rng.Float64() < m.pOn*activity {
		m.on = true
		m.count++
	}
	return false
}

func (m *switchModel) primary() float64 { return 0 }

func (m *switchModel) appendFields(dst []byte, _ float64, mode valueMode) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, m.key...)
	dst = append(dst, '"', ':')
	switch mode {
	case modeWrongType:
		dst = append(dst, '"')
		dst = strconv.AppendBool(dst, m.on)
		dst = append(dst, '"')
	case modeOutOfRange:
		dst = append(dst, '2')
	default:
		dst = strconv.AppendBool(dst, m.on)
	}
	dst = append(dst, ',', '"')
	dst = append(dst, m.countKey...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, m.count, 10)
}

// GPS: a vehicle around a per-device home position (within ~50 km of
// 52.52 N 13.40 E). It is parked at night and drives in the day with a speed
// around a per-vehicle cruise speed, a heading that wanders, and stops.
type gps struct {
	homeLat, homeLon                 float64
	lat, lon, speed, heading, cruise float64
	moving                           bool
}

// gpsRange is how far (in degrees of latitude, ~30 km) a vehicle strays
// from home before it turns back.
const gpsRange = 0.27

func newGPS(rng *rand.Rand) model {
	m := &gps{
		homeLat: 52.52 + 0.4*(rng.Float64()-0.5),
		homeLon: 13.40 + 0.6*(rng.Float64()-0.5),
		heading: 360 * rng.Float64(),
		cruise:  30 + 60*rng.Float64(),
	}
	m.lat, m.lon = m.homeLat, m.homeLon
	return m
}

func (m *gps) step(rng *rand.Rand, ts int64, dt float64) bool {
	activity := 0.5 + 0.5*dayPhase(ts)
	if m.moving {
		if rng.Float64() < 0.01*(1.2-activity) {
			m.moving = false
		}
	} else if rng.Float64() < 0.02*activity {
		m.moving = true
	}
	target := 0.0
	if m.moving {
		target = m.cruise
	}
	m.speed = max(m.speed+0.2*(target-m.speed)+2*rng.NormFloat64()*b2f(m.moving), 0)
	m.heading = math.Mod(m.heading+10*rng.NormFloat64()*b2f(m.speed > 1)+360, 360)
	dLat, dLon := m.homeLat-m.lat, (m.homeLon-m.lon)*math.Cos(m.lat*math.Pi/180)
	if dLat*dLat+dLon*dLon > gpsRange*gpsRange {
		m.heading = math.Mod(math.Atan2(dLon, dLat)*180/math.Pi+360, 360) // head home
	}
	km := m.speed * dt / 3600
	rad := m.heading * math.Pi / 180
	m.lat += km * math.Cos(rad) / 111.32
	m.lon += km * math.Sin(rad) / (111.32 * math.Cos(m.lat*math.Pi/180))
	return false
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *gps) primary() float64 { return m.speed }

func (m *gps) appendFields(dst []byte, v float64, mode valueMode) []byte {
	dst = append(dst, `,"lat":`...)
	dst = strconv.AppendFloat(dst, m.lat, 'f', 6, 64)
	dst = append(dst, `,"lon":`...)
	dst = strconv.AppendFloat(dst, m.lon, 'f', 6, 64)
	dst = append(dst, `,"speed_kmh":`...)
	dst = appendNum(dst, v, 1, mode)
	dst = append(dst, `,"heading":`...)
	return strconv.AppendFloat(dst, math.Round(m.heading), 'f', 0, 64)
}
