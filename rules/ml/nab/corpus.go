package nab

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// File is one NAB data file: its points and labelled windows.
type File struct {
	Name     string // path relative to the data directory, as windows.json names it
	Category string // its directory
	Times    []time.Time
	Values   []float64
	Windows  [][2]int // inclusive point indices
}

const (
	csvTime    = "2006-01-02 15:04:05"
	windowTime = "2006-01-02 15:04:05.000000"
)

// Load reads the data files that windowsPath labels (NAB's
// combined_windows.json form: file → list of [start, end] timestamps) from
// dataDir, in name order.
func Load(dataDir, windowsPath string) ([]File, error) {
	b, err := os.ReadFile(windowsPath)
	if err != nil {
		return nil, fmt.Errorf("read windows: %w", err)
	}
	var labels map[string][][2]string
	if err := json.Unmarshal(b, &labels); err != nil {
		return nil, fmt.Errorf("read windows %s: %w", windowsPath, err)
	}
	if len(labels) == 0 {
		return nil, fmt.Errorf("read windows %s: no files labelled", windowsPath)
	}
	names := make([]string, 0, len(labels))
	for name := range labels {
		names = append(names, name)
	}
	slices.Sort(names)
	files := make([]File, 0, len(names))
	for _, name := range names {
		f, err := loadFile(dataDir, name, labels[name])
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

func loadFile(dataDir, name string, windows [][2]string) (File, error) {
	f := File{Name: name, Category: filepath.Dir(filepath.FromSlash(name))}
	fh, err := os.Open(filepath.Join(dataDir, filepath.FromSlash(name)))
	if err != nil {
		return f, fmt.Errorf("nab data: %w", err)
	}
	defer fh.Close()
	r := csv.NewReader(fh)
	r.ReuseRecord = true
	head, err := r.Read()
	if err != nil || len(head) < 2 || head[0] != "timestamp" || head[1] != "value" {
		return f, fmt.Errorf("nab data %s: want a header timestamp,value", name)
	}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return f, fmt.Errorf("nab data %s: %w", name, err)
		}
		t, err := time.Parse(csvTime, rec[0])
		if err != nil {
			return f, fmt.Errorf("nab data %s line %d: timestamp: %w", name, line, err)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rec[1]), 64)
		if err != nil {
			return f, fmt.Errorf("nab data %s line %d: value: %w", name, line, err)
		}
		f.Times = append(f.Times, t)
		f.Values = append(f.Values, v)
	}
	for i, w := range windows {
		lo, err1 := time.Parse(windowTime, w[0])
		hi, err2 := time.Parse(windowTime, w[1])
		if err := errors.Join(err1, err2); err != nil {
			return f, fmt.Errorf("nab windows %s[%d]: %w", name, i, err)
		}
		first, _ := slices.BinarySearchFunc(f.Times, lo, func(a, b time.Time) int { return a.Compare(b) })
		end, found := slices.BinarySearchFunc(f.Times, hi, func(a, b time.Time) int { return a.Compare(b) })
		last := end - 1
		if found {
			last = end
		}
		if first > last || last >= len(f.Times) {
			return f, fmt.Errorf("nab windows %s[%d]: no points between %s and %s", name, i, w[0], w[1])
		}
		if n := len(f.Windows); n > 0 && first <= f.Windows[n-1][1] {
			return f, fmt.Errorf("nab windows %s[%d]: overlaps the window before", name, i)
		}
		f.Windows = append(f.Windows, [2]int{first, last})
	}
	return f, nil
}
