package ml

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Model is a model trained elsewhere and shipped in the config: linear or
// logistic regression, or a tree ensemble (gradient-boosted trees from
// XGBoost's JSON dump). MODELS.md documents the JSON form. A Model is
// read-only once parsed: plans on any goroutine may share it.
type Model struct {
	name      string
	kind      string
	features  []string
	weights   []float64
	intercept float64
	classes   []string
	threshold float64
	objective string
	base      float64 // margin added to every class (trees)
	numClass  int     // trees: classes of a multi-class objective, else 1
	trees     [][]treeNode
}

type treeNode struct {
	feat          int32 // -1 for a leaf
	yes, no, miss int32
	cond          float64 // go to yes when x < cond
	leaf          float64
}

// ModelError is a model that does not load: which model, which field (a
// path such as "trees[3].nodes[7].yes") and why.
type ModelError struct {
	Model, Field string
	Err          error
}

func (e *ModelError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("model %q: %v", e.Model, e.Err)
	}
	return fmt.Sprintf("model %q: %s: %v", e.Model, e.Field, e.Err)
}

func (e *ModelError) Unwrap() error { return e.Err }

// Limits on what a model may hold, so a config cannot make a gateway run out
// of memory.
const (
	MaxFeatures = 4096
	MaxTrees    = 10000
	MaxNodes    = 1 << 20 // in all trees
	MaxClasses  = 1024
)

// modelSpec is the JSON form.
type modelSpec struct {
	Kind      string            `json:"kind"`
	Features  []string          `json:"features"`
	Weights   []float64         `json:"weights"`
	Intercept float64           `json:"intercept"`
	Classes   []string          `json:"classes"`
	Threshold *float64          `json:"threshold"`
	Objective string            `json:"objective"`
	BaseScore *float64          `json:"base_score"`
	NumClass  int               `json:"num_class"`
	Trees     []json.RawMessage `json:"trees"`
}

// dumpNode is a node of XGBoost's JSON dump (other keys, such as depth,
// gain and cover, are ignored).
type dumpNode struct {
	NodeID    *int            `json:"nodeid"`
	Split     json.RawMessage `json:"split"`
	Cond      *float64        `json:"split_condition"`
	Yes       *int            `json:"yes"`
	No        *int            `json:"no"`
	Missing   *int            `json:"missing"`
	Leaf      *float64        `json:"leaf"`
	Children  []dumpNode      `json:"children"`
	collected bool
}

// ParseModel reads a model in the JSON form MODELS.md describes, checking
// its shape: a bad model is a *ModelError naming the model and the field.
func ParseModel(name string, spec []byte) (*Model, error) {
	m, err := parseModel(name, spec)
	if err != nil {
		var me *ModelError
		if !errors.As(err, &me) {
			err = &ModelError{Model: name, Err: err}
		}
		return nil, err
	}
	return m, nil
}

func parseModel(name string, spec []byte) (*Model, error) {
	bad := func(field, format string, args ...any) error {
		return &ModelError{Model: name, Field: field, Err: fmt.Errorf(format, args...)}
	}
	if name == "" {
		return nil, bad("", "a model needs a name")
	}
	var s modelSpec
	d := json.NewDecoder(bytes.NewReader(spec))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return nil, fmt.Errorf("not a model: %w", err)
	}
	if d.More() {
		return nil, errors.New("not a model: data after the JSON object")
	}
	m := &Model{name: name, kind: s.Kind, features: s.Features, classes: s.Classes, threshold: 0.5, numClass: 1}
	if len(s.Features) == 0 {
		return nil, bad("features", "is required (the names of the inputs, in order)")
	}
	if len(s.Features) > MaxFeatures {
		return nil, bad("features", "has %d names, at most %d", len(s.Features), MaxFeatures)
	}
	seen := map[string]bool{}
	for i, f := range s.Features {
		if f == "" || seen[f] {
			return nil, bad(fmt.Sprintf("features[%d]", i), "names must be unique and not empty, got %q", f)
		}
		seen[f] = true
	}
	if s.Threshold != nil {
		if !(*s.Threshold > 0 && *s.Threshold < 1) {
			return nil, bad("threshold", "must be between 0 and 1, got %v", *s.Threshold)
		}
		m.threshold = *s.Threshold
	}
	switch s.Kind {
	case "linear", "logistic":
		if len(s.Weights) != len(s.Features) {
			return nil, bad("weights", "has %d weights for %d features", len(s.Weights), len(s.Features))
		}
		for i, w := range s.Weights {
			if math.IsNaN(w) || math.IsInf(w, 0) {
				return nil, bad(fmt.Sprintf("weights[%d]", i), "is not a finite number")
			}
		}
		if len(s.Trees) > 0 || s.Objective != "" || s.NumClass != 0 || s.BaseScore != nil {
			return nil, bad("kind", "%s models have no trees, objective, num_class or base_score", s.Kind)
		}
		m.weights, m.intercept = s.Weights, s.Intercept
		if s.Kind == "linear" && (len(s.Classes) > 0 || s.Threshold != nil) {
			return nil, bad("classes", "a linear model predicts a number: it has no classes or threshold")
		}
		if s.Kind == "logistic" && len(s.Classes) != 0 && len(s.Classes) != 2 {
			return nil, bad("classes", "a logistic model has 2 classes, got %d", len(s.Classes))
		}
	case "trees":
		if len(s.Weights) > 0 {
			return nil, bad("weights", "tree models have no weights")
		}
		if err := m.parseTrees(&s, bad); err != nil {
			return nil, err
		}
	case "":
		return nil, bad("kind", "is required: linear, logistic or trees")
	default:
		return nil, bad("kind", "unknown kind %q: linear, logistic or trees", s.Kind)
	}
	return m, nil
}

func (m *Model) parseTrees(s *modelSpec, bad func(string, string, ...any) error) error {
	base := 0.5
	if s.BaseScore != nil {
		base = *s.BaseScore
	}
	if math.IsNaN(base) || math.IsInf(base, 0) {
		return bad("base_score", "is not a finite number")
	}
	m.objective = s.Objective
	switch s.Objective {
	case "", "reg:squarederror", "reg:linear", "reg:absoluteerror", "binary:logitraw":
		m.objective = "regression"
		m.base = base
		if len(s.Classes) > 0 || s.NumClass > 1 {
			return bad("objective", "a regression has no classes")
		}
	case "binary:logistic", "reg:logistic":
		m.objective = "binary"
		if !(base > 0 && base < 1) {
			return bad("base_score", "must be a probability between 0 and 1 for %s, got %v", s.Objective, base)
		}
		m.base = math.Log(base / (1 - base))
		if len(s.Classes) != 0 && len(s.Classes) != 2 {
			return bad("classes", "a binary model has 2 classes, got %d", len(s.Classes))
		}
	case "multi:softprob", "multi:softmax":
		m.objective = "multi"
		if s.NumClass < 2 || s.NumClass > MaxClasses {
			return bad("num_class", "must be from 2 to %d for %s, got %d", MaxClasses, s.Objective, s.NumClass)
		}
		m.numClass = s.NumClass
		if len(s.Classes) != 0 && len(s.Classes) != s.NumClass {
			return bad("classes", "has %d labels for %d classes", len(s.Classes), s.NumClass)
		}
	default:
		return bad("objective", "unknown objective %q", s.Objective)
	}
	if len(s.Trees) == 0 {
		return bad("trees", "is required: a list of trees as XGBoost's dump_model(dump_format='json') writes them")
	}
	if len(s.Trees) > MaxTrees {
		return bad("trees", "has %d trees, at most %d", len(s.Trees), MaxTrees)
	}
	if len(s.Trees)%m.numClass != 0 {
		return bad("trees", "%d trees do not divide among %d classes", len(s.Trees), m.numClass)
	}
	nodes := 0
	for i, raw := range s.Trees {
		var root dumpNode
		if err := json.Unmarshal(raw, &root); err != nil {
			return bad(fmt.Sprintf("trees[%d]", i), "not a tree: %v", err)
		}
		t, err := m.flatten(&root, &nodes)
		if err != nil {
			return bad(fmt.Sprintf("trees[%d]", i), "%v", err)
		}
		m.trees = append(m.trees, t)
	}
	return nil
}

// flatten turns a dump tree into an array of nodes indexed from the root,
// checking that every branch leads to a node of its children, once.
func (m *Model) flatten(root *dumpNode, total *int) ([]treeNode, error) {
	byID := map[int]*dumpNode{}
	var collect func(n *dumpNode, depth int) error
	collect = func(n *dumpNode, depth int) error {
		if depth > 256 {
			return errors.New("deeper than 256 levels")
		}
		if *total++; *total > MaxNodes {
			return fmt.Errorf("more than %d nodes in all trees", MaxNodes)
		}
		if n.NodeID == nil {
			return errors.New("a node has no nodeid")
		}
		if byID[*n.NodeID] != nil {
			return fmt.Errorf("nodeid %d appears twice", *n.NodeID)
		}
		byID[*n.NodeID] = n
		for i := range n.Children {
			if err := collect(&n.Children[i], depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := collect(root, 0); err != nil {
		return nil, err
	}
	index := map[int]int32{}
	var order []*dumpNode
	walk := func(n *dumpNode) (int32, error) {
		if n.collected {
			return 0, fmt.Errorf("node %d is reached twice", *n.NodeID)
		}
		n.collected = true
		at := int32(len(order))
		index[*n.NodeID] = at
		order = append(order, n)
		return at, nil
	}
	if _, err := walk(root); err != nil {
		return nil, err
	}
	out := []treeNode{}
	for i := 0; i < len(order); i++ {
		n := order[i]
		id := *n.NodeID
		if n.Leaf != nil {
			if math.IsNaN(*n.Leaf) || math.IsInf(*n.Leaf, 0) {
				return nil, fmt.Errorf("node %d: leaf is not a finite number", id)
			}
			if len(n.Children) > 0 || n.Cond != nil {
				return nil, fmt.Errorf("node %d: a leaf has no split or children", id)
			}
			out = append(out, treeNode{feat: -1, leaf: *n.Leaf})
			continue
		}
		f, err := m.splitFeature(n.Split)
		if err != nil {
			return nil, fmt.Errorf("node %d: split: %v", id, err)
		}
		if n.Cond == nil || math.IsNaN(*n.Cond) {
			return nil, fmt.Errorf("node %d: split_condition is required (a number)", id)
		}
		if n.Yes == nil || n.No == nil {
			return nil, fmt.Errorf("node %d: a split needs yes and no", id)
		}
		miss := n.Yes
		if n.Missing != nil {
			miss = n.Missing
		}
		tn := treeNode{feat: f, cond: *n.Cond}
		for _, b := range []struct {
			name string
			id   int
			dst  *int32
		}{{"yes", *n.Yes, &tn.yes}, {"no", *n.No, &tn.no}, {"missing", *miss, &tn.miss}} {
			child := byID[b.id]
			if child == nil || !isChild(n, b.id) {
				return nil, fmt.Errorf("node %d: %s is %d, which is not one of its children", id, b.name, b.id)
			}
			if at, ok := index[b.id]; ok {
				*b.dst = at
				continue
			}
			at, err := walk(child)
			if err != nil {
				return nil, err
			}
			*b.dst = at
		}
		out = append(out, tn)
	}
	return out, nil
}

func isChild(n *dumpNode, id int) bool {
	for i := range n.Children {
		if *n.Children[i].NodeID == id {
			return true
		}
	}
	return false
}

// splitFeature reads a split's feature: one of the model's feature names,
// or XGBoost's default name f<i>, or a number i.
func (m *Model) splitFeature(raw json.RawMessage) (int32, error) {
	if len(raw) == 0 {
		return 0, errors.New("is required")
	}
	var name string
	if err := json.Unmarshal(raw, &name); err != nil {
		var i int
		if err := json.Unmarshal(raw, &i); err != nil {
			return 0, fmt.Errorf("want a feature name or index, got %s", raw)
		}
		name = "f" + strconv.Itoa(i)
	}
	for i, f := range m.features {
		if f == name {
			return int32(i), nil
		}
	}
	if rest, ok := strings.CutPrefix(name, "f"); ok {
		if i, err := strconv.Atoi(rest); err == nil && i >= 0 && i < len(m.features) {
			return int32(i), nil
		}
	}
	return 0, fmt.Errorf("%q is not one of the %d features", name, len(m.features))
}

// Name returns the model's name.
func (m *Model) Name() string { return m.name }

// Features returns the names of the model's inputs, in order.
func (m *Model) Features() []string { return m.features }

// Classifier reports whether the model has classes (classify), not only a
// number (predict).
func (m *Model) Classifier() bool {
	return m.kind == "logistic" || m.objective == "binary" || m.objective == "multi"
}

// Scratch returns the memory Eval needs besides its inputs.
func (m *Model) Scratch() []float64 { return make([]float64, m.numClass) }

// Eval computes the model over x (len(x) == len(Features()); NaN is a
// missing value) with scratch from Scratch. pred is the predicted number (a
// regression's value, the probability of class 1 of a binary model, the
// probability of the chosen class of a multi-class one) and class the chosen
// class (0 for a regression). A linear or logistic model with a missing
// input predicts NaN; trees take the missing branch.
func (m *Model) Eval(x, scratch []float64) (pred float64, class int) {
	switch m.kind {
	case "linear", "logistic":
		y := m.intercept
		for i, w := range m.weights {
			y += w * x[i]
		}
		if m.kind == "linear" {
			return y, 0
		}
		p := 1 / (1 + math.Exp(-y))
		if p >= m.threshold {
			return p, 1
		}
		return p, 0
	}
	for c := range scratch {
		scratch[c] = m.base
	}
	for i, t := range m.trees {
		scratch[i%m.numClass] += evalTree(t, x)
	}
	switch m.objective {
	case "binary":
		p := 1 / (1 + math.Exp(-scratch[0]))
		if p >= m.threshold {
			return p, 1
		}
		return p, 0
	case "multi":
		best := 0
		for c, v := range scratch {
			if v > scratch[best] {
				best = c
			}
		}
		var sum float64
		for _, v := range scratch {
			sum += math.Exp(v - scratch[best])
		}
		return 1 / sum, best
	}
	return scratch[0], 0
}

func evalTree(t []treeNode, x []float64) float64 {
	i := int32(0)
	for {
		n := &t[i]
		if n.feat < 0 {
			return n.leaf
		}
		v := x[n.feat]
		switch {
		case math.IsNaN(v):
			i = n.miss
		case v < n.cond:
			i = n.yes
		default:
			i = n.no
		}
	}
}

// Label returns the label of class c: its name from the model's classes,
// or "" and false when the model names none.
func (m *Model) Label(c int) (string, bool) {
	if c < len(m.classes) {
		return m.classes[c], true
	}
	return "", false
}

// ParseModels loads a config's models (name → JSON form) and returns every
// bad one: the error joins one *ModelError per model, in name order, each
// with Field "models.<name>.<field>" as a config path.
func ParseModels(specs map[string][]byte) (map[string]*Model, error) {
	names := make([]string, 0, len(specs))
	for n := range specs {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make(map[string]*Model, len(specs))
	var errs []error
	for _, n := range names {
		m, err := ParseModel(n, specs[n])
		if err != nil {
			var me *ModelError
			errors.As(err, &me)
			path := "models." + n
			if me.Field != "" {
				path += "." + me.Field
			}
			errs = append(errs, &ModelError{Model: n, Field: path, Err: me.Err})
			continue
		}
		out[n] = m
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
