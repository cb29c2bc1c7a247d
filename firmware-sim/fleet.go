package main

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Device model constants. Temperature is a per-device base (15–30 °C) plus a
// slow mean-reverting drift (Ornstein–Uhlenbeck, about ±0.7 °C, time
// constant ~200 readings) plus sensor noise; humidity is the same shape
// around a per-device base of 35–55 %, clamped to 30–60 %.
const (
	tempBaseMin, tempBaseSpan = 15.0, 15.0
	tempRevert, tempStep      = 0.005, 0.07 // drift std = step/sqrt(2·revert) ≈ 0.7
	tempNoise                 = 0.1

	humBaseMin, humBaseSpan = 35.0, 20.0
	humRevert, humStep      = 0.01, 0.3 // drift std ≈ 2.1
	humNoise                = 0.2
	humMin, humMax          = 30.0, 60.0
)

// Reading is what one message carries, rounded as it appears in the payload.
type Reading struct {
	Device      int // index: the device is named "dev-<Device>"
	Temperature float64
	Humidity    float64
}

type device struct {
	name           string
	topic          string
	rng            *rand.Rand
	tempBase, temp float64 // temp is the current drift
	humBase, hum   float64
}

// Fleet is the simulated devices, dev-0 .. dev-(n-1), read round-robin. Each
// device draws from its own generator seeded from (seed, index), so a seed
// fixes the whole sequence of readings. A Fleet is not safe for concurrent
// use.
type Fleet struct {
	devices []device
	next    int
}

// NewFleet returns n devices whose topics are topic with "{device}" replaced
// by the device name.
func NewFleet(n int, seed uint64, topic string) *Fleet {
	f := &Fleet{devices: make([]device, n)}
	s := splitmix64(seed)
	for i := range f.devices {
		name := "dev-" + strconv.Itoa(i)
		rng := rand.New(rand.NewPCG(s, splitmix64(s^uint64(i))))
		f.devices[i] = device{
			name:     name,
			topic:    strings.ReplaceAll(topic, "{device}", name),
			rng:      rng,
			tempBase: tempBaseMin + tempBaseSpan*rng.Float64(),
			temp:     tempStep / math.Sqrt(2*tempRevert) * rng.NormFloat64(),
			humBase:  humBaseMin + humBaseSpan*rng.Float64(),
			hum:      humStep / math.Sqrt(2*humRevert) * rng.NormFloat64(),
		}
	}
	return f
}

// Len returns the number of devices.
func (f *Fleet) Len() int { return len(f.devices) }

// Name returns the name of device i.
func (f *Fleet) Name(i int) string { return f.devices[i].name }

// Topic returns the topic device i publishes to.
func (f *Fleet) Topic(i int) string { return f.devices[i].topic }

// Next advances the next device in turn by one reading and appends its
// payload to dst, in exactly this form (workload W1):
//
//	{"device":"dev-17","temperature":23.4,"humidity":41.2,"ts":1732500000000}
//
// tsMillis is the ts field, in Unix milliseconds.
func (f *Fleet) Next(dst []byte, tsMillis int64) ([]byte, Reading) {
	i := f.next
	f.next++
	if f.next == len(f.devices) {
		f.next = 0
	}
	d := &f.devices[i]
	d.temp += -tempRevert*d.temp + tempStep*d.rng.NormFloat64()
	d.hum += -humRevert*d.hum + humStep*d.rng.NormFloat64()
	r := Reading{
		Device:      i,
		Temperature: round1(d.tempBase + d.temp + tempNoise*d.rng.NormFloat64()),
		Humidity:    round1(min(max(d.humBase+d.hum+humNoise*d.rng.NormFloat64(), humMin), humMax)),
	}
	dst = append(dst, `{"device":"`...)
	dst = append(dst, d.name...)
	dst = append(dst, `","temperature":`...)
	dst = strconv.AppendFloat(dst, r.Temperature, 'f', 1, 64)
	dst = append(dst, `,"humidity":`...)
	dst = strconv.AppendFloat(dst, r.Humidity, 'f', 1, 64)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, tsMillis, 10)
	dst = append(dst, '}')
	return dst, r
}

func round1(v float64) float64 {
	v = math.Round(v*10) / 10
	if v == 0 {
		return 0 // no "-0.0"
	}
	return v
}

// splitmix64 scrambles a seed so that neighbouring seeds and device indexes
// give unrelated generator states.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
