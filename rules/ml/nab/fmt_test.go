package nab

import (
	"fmt"
	"strconv"
)

func hhmm(i int) string      { return fmt.Sprintf("%02d:%02d", i/60, i%60) }
func ftoa(v float64) string  { return strconv.FormatFloat(v, 'f', -1, 64) }
func ftoa1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
