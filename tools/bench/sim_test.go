package main

import (
	"testing"
	"time"
)

// TestAfternoonOffset checks that now plus the offset is 15:00 and that the
// offset stays inside what firmware-sim accepts (-14h .. 14h), at every hour.
func TestAfternoonOffset(t *testing.T) {
	day := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	for m := 0; m < 24*60; m += 7 {
		now := day.Add(time.Duration(m) * time.Minute)
		off := afternoonOffset(now)
		if off < -14*time.Hour || off > 14*time.Hour {
			t.Fatalf("%s: offset %s outside -14h .. 14h", now.Format("15:04"), off)
		}
		if local := now.Add(off).Format("15:04"); local != "15:00" {
			t.Fatalf("%s: offset %s gives %s local, want 15:00", now.Format("15:04"), off, local)
		}
	}
}
