package uplink

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		tmpl, want string
	}{
		{"telemetry.{gateway}.{rule}", "telemetry.gw-01.pump_1m"},
		{"sluice.{gateway}.{rule}", "sluice.gw-01.pump_1m"},
		{"{rule}", "pump_1m"},
		{"{gateway}{rule}", "gw-01pump_1m"},
		{"a{gateway}b{rule}c", "agw-01bpump_1mc"},
		{"{rule}.{rule}", "pump_1m.pump_1m"},
		{"plain", "plain"},
		{"sensors/{gateway}/{rule}", "sensors/gw-01/pump_1m"},
	}
	for _, tt := range tests {
		tm, err := ParseTemplate(tt.tmpl)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tt.tmpl, err)
			continue
		}
		if got := tm.Expand("gw-01", "pump_1m"); got != tt.want {
			t.Errorf("%q.Expand = %q, want %q", tt.tmpl, got, tt.want)
		}
		if got := string(tm.Append([]byte("x:"), "gw-01", "pump_1m")); got != "x:"+tt.want {
			t.Errorf("%q.Append = %q, want %q", tt.tmpl, got, "x:"+tt.want)
		}
		if tm.String() != tt.tmpl {
			t.Errorf("String() = %q, want %q", tm.String(), tt.tmpl)
		}
	}
}

func TestParseTemplateErrors(t *testing.T) {
	tests := []struct {
		tmpl, msg string // msg: a part of the error message
	}{
		{"", "empty"},
		{"a.{foo}", "unknown placeholder {foo}"},
		{"a.{Gateway}", "unknown placeholder {Gateway}"},
		{"{}", "unknown placeholder {}"},
		{"a.{gateway", "unclosed { at offset 2"},
		{"a.{gate{way}", "unclosed { at offset 2"},
		{"{{gateway}}", "unclosed { at offset 0"},
		{"a.gateway}", "unmatched } at offset 9"},
		{"{rule}}", "unmatched } at offset 6"},
		{"{", "unclosed {"},
	}
	for _, tt := range tests {
		_, err := ParseTemplate(tt.tmpl)
		if err == nil {
			t.Errorf("ParseTemplate(%q): no error", tt.tmpl)
			continue
		}
		if !errors.Is(err, ErrInvalidTemplate) {
			t.Errorf("ParseTemplate(%q): %v does not wrap ErrInvalidTemplate", tt.tmpl, err)
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseTemplate(%q): %q does not say %q", tt.tmpl, err, tt.msg)
		}
		if _, err := ParseSubject(tt.tmpl); err == nil {
			t.Errorf("ParseSubject(%q): no error", tt.tmpl)
		}
	}
}

func TestParseSubject(t *testing.T) {
	for _, ok := range []string{
		"telemetry.{gateway}.{rule}", "{gateway}{rule}", "a.{rule}x", "{rule}", "a.b-c_d.{gateway}",
	} {
		if _, err := ParseSubject(ok); err != nil {
			t.Errorf("ParseSubject(%q): %v", ok, err)
		}
	}
	tests := []struct {
		tmpl, msg string
	}{
		{"a..{rule}", "empty subject token"},
		{".a.{rule}", "empty subject token"},
		{"a.{rule}.", "empty subject token"},
		{"{gateway}..{rule}", "empty subject token"},
		{".", "empty subject token"},
		{"a b.{rule}", "whitespace"},
		{"a.{rule}\t", "whitespace"},
		{"a.*.{rule}", "wildcard '*'"},
		{"a.{rule}.>", "wildcard '>'"},
		{"a.{rule}*", "wildcard '*'"},
	}
	for _, tt := range tests {
		if _, err := ParseTemplate(tt.tmpl); err != nil {
			t.Errorf("ParseTemplate(%q): %v; only ParseSubject should reject it", tt.tmpl, err)
		}
		_, err := ParseSubject(tt.tmpl)
		if err == nil {
			t.Errorf("ParseSubject(%q): no error", tt.tmpl)
			continue
		}
		if !errors.Is(err, ErrInvalidTemplate) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseSubject(%q): %q, want ErrInvalidTemplate saying %q", tt.tmpl, err, tt.msg)
		}
	}
}

func TestValidSubject(t *testing.T) {
	for s, want := range map[string]bool{
		"a": true, "a.b.c": true, "a-b_c.d": true, "a.b*c": false,
		"": false, ".": false, "a.": false, ".a": false, "a..b": false,
		"a b": false, "a.>": false, "a.*": false, "a\n": false,
	} {
		if got := validSubject([]byte(s)); got != want {
			t.Errorf("validSubject(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestTemplateAppendNoAllocs(t *testing.T) {
	tm, err := ParseTemplate("telemetry.{gateway}.{rule}")
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { dst = tm.Append(dst[:0], "gw-01", "rule") }); n != 0 {
		t.Errorf("Append: %v allocs, want 0", n)
	}
}

func TestTemplateZeroValue(t *testing.T) {
	var tm Template
	if got := tm.Expand("gw", "r"); got != "" {
		t.Errorf("zero Template expands to %q", got)
	}
}

func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{
		"telemetry.{gateway}.{rule}", "{rule}", "{", "}", "{}", "{{gateway}}", "a..b", "a.{foo}",
		"a.*.{rule}", "{gateway}{rule}", " ", ".{rule}", "a.{rule}.>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseTemplate(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidTemplate) {
				t.Fatalf("ParseTemplate(%q): %v does not wrap ErrInvalidTemplate", s, err)
			}
			if _, err := ParseSubject(s); err == nil {
				t.Fatalf("ParseSubject(%q) accepts what ParseTemplate rejects", s)
			}
			return
		}
		if tm.String() != s {
			t.Fatalf("String() = %q, want %q", tm.String(), s)
		}
		got := tm.Expand("gw-01", "rule_1")
		if string(tm.Append(nil, "gw-01", "rule_1")) != got {
			t.Fatalf("Append and Expand differ for %q", s)
		}
		if !strings.ContainsAny(s, "{}") && got != s {
			t.Fatalf("template without braces %q expands to %q", s, got)
		}
		if strings.Contains(got, "{gateway}") || strings.Contains(got, "{rule}") {
			t.Fatalf("%q expands to %q, which still has a placeholder", s, got)
		}
		if _, err := ParseSubject(s); err == nil && !validSubject([]byte(got)) {
			t.Fatalf("ParseSubject(%q) accepts it, but it expands to the invalid subject %q", s, got)
		}
	})
}

func BenchmarkTemplateAppend(b *testing.B) {
	tm, err := ParseTemplate("telemetry.{gateway}.{rule}")
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		dst = tm.Append(dst[:0], "gw-01", "pump_temp_1m")
	}
}
