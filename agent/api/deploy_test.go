package api

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// exportedNames scrapes a server fed with a full status and returns every
// metric name in it, with the histogram suffixes.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	s, ts := newTestServer(t, &fixedSource{st: sampleStatus()})
	s.Acked("cloud")
	_, body := get(t, ts.URL+"/metrics", "")
	names := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		names[regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*`).FindString(line)] = true
	}
	names["sluice_buffer_dropped_total"] = true // exported once a drop happens; in Metrics()
	return names
}

var metricRef = regexp.MustCompile(`\b(?:sluice|go|process)_[a-z0-9_]+`)

// checkRefs fails for every metric expr refers to that the agent does not
// export.
func checkRefs(t *testing.T, where, expr string, names map[string]bool) int {
	t.Helper()
	refs := metricRef.FindAllString(expr, -1)
	for _, m := range refs {
		if !names[m] {
			t.Errorf("%s refers to %s, which the agent does not export (expr %q)", where, m, expr)
		}
	}
	if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") ||
		strings.Count(expr, "[") != strings.Count(expr, "]") {
		t.Errorf("%s: unbalanced brackets in %q", where, expr)
	}
	return len(refs)
}

func deployFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGrafanaDashboard(t *testing.T) {
	names := exportedNames(t)
	var dash struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Schema     int    `json:"schemaVersion"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			GridPos struct{ X, Y, W, H int }
			Targets []struct {
				Expr  string `json:"expr"`
				RefID string `json:"refId"`
			} `json:"targets"`
		} `json:"panels"`
	}
	raw := deployFile(t, "grafana/sluice.json")
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("sluice.json is not valid JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || dash.Schema < 30 || len(dash.Panels) == 0 {
		t.Fatalf("dashboard header: uid %q title %q schema %d panels %d", dash.UID, dash.Title, dash.Schema, len(dash.Panels))
	}
	for _, v := range dash.Templating.List {
		checkRefs(t, "variable "+v.Name, v.Definition, names)
	}
	ids := map[int]bool{}
	refs := 0
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: grid position %+v outside the 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if n := checkRefs(t, "panel "+p.Title, tg.Expr, names); n == 0 {
				t.Errorf("panel %q: query %q refers to no metric", p.Title, tg.Expr)
			}
			refs++
		}
	}
	if refs < 20 {
		t.Errorf("only %d queries", refs)
	}
}

func TestAlertRules(t *testing.T) {
	names := exportedNames(t)
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	raw := deployFile(t, "prometheus/alerts.yml")
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	alerts := map[string]bool{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if alerts[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			if r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %q needs expr, labels.severity and annotations.summary", r.Alert)
			}
			if r.For != "" && !regexp.MustCompile(`^\d+[smh]$`).MatchString(r.For) {
				t.Errorf("alert %s: for %q is not a duration", r.Alert, r.For)
			}
			if checkRefs(t, "alert "+r.Alert, r.Expr, names) == 0 {
				t.Errorf("alert %s refers to no metric", r.Alert)
			}
		}
	}
	// The three: buffer filling, uplink down, dead letters rising.
	for _, a := range []string{"SluiceBufferFilling", "SluiceUplinkDown", "SluiceDeadLettersRising"} {
		if !alerts[a] {
			t.Errorf("alert %s missing", a)
		}
	}
	var prom struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName     string `yaml:"job_name"`
			MetricsPath string `yaml:"metrics_path"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(deployFile(t, "prometheus/prometheus.yml"), &prom); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	if len(prom.RuleFiles) != 1 || prom.RuleFiles[0] != "alerts.yml" || len(prom.ScrapeConfigs) != 1 ||
		prom.ScrapeConfigs[0].JobName != "sluice" || prom.ScrapeConfigs[0].MetricsPath != "/metrics" {
		t.Errorf("prometheus.yml: %+v", prom)
	}
	// promtool parses the PromQL too, where it is installed (Debian:
	// apt-get install prometheus); the checks above stand in for it
	// elsewhere.
	if tool, err := exec.LookPath("promtool"); err == nil {
		out, err := exec.Command(tool, "check", "rules", filepath.Join("..", "..", "deploy", "prometheus", "alerts.yml")).CombinedOutput()
		if err != nil {
			t.Errorf("promtool check rules: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed: checked the rules' structure and metric names only")
	}
}
