// celeval evaluates the CEL of knd's manifests with cel-go, the CEL implementation the
// Kubernetes API server uses, for test/deploy/test_deploy.py. Built by test/deploy/celeval.sh
// from Debian's cel-go sources (GOPATH mode, no modules, no network).
//
// One JSON document on stdin, one on stdout. Two kinds of input:
//
//	{"policy": <ValidatingAdmissionPolicy spec>, "request": {"operation", "resource":
//	 {"group", "version", "resource"}, "subResource", "userInfo": {"username", "extra"}},
//	 "object": ..., "oldObject": ...}
//	  -> {"applies": bool, "allowed": bool, "message": string}
//
// applies: the request is in matchConstraints.resourceRules and every matchCondition is true.
// allowed: every validation is true (true when the policy does not apply). message: for the
// first failing validation its evaluated messageExpression, else its message, else what the
// API server says by default; for an expression that fails to evaluate, the error (the policies
// are failurePolicy: Fail, so that denies the request too).
//
//	{"mutatingPolicy": <MutatingAdmissionPolicy spec>, "binding": <its binding's spec>,
//	 "params": [<objects of the paramKind>], "request": {..., "namespace"}, "object": ...}
//	  -> {"applies": bool, "allowed": bool, "message": string, "object": <the mutated object>}
//
// The policy runs once per param the binding selects (mutate.go), each run seeing the object as
// the previous one left it; its ApplyConfiguration mutations are merged as server-side apply
// merges them, for the Pod lists whose keys mutate.go knows (any other list is atomic and
// refused). "Object" and "Object.<path>" are declared as types with dyn fields.
//
//	{"expression": "...", "vars": {"device": ...}}  ->  {"value": <result as JSON>}
//
// The environment follows the API server's: request, object, oldObject, params, namespaceObject
// and variables (the policy's variables, each one in order, seeing the earlier ones) as dyn;
// optional types, the strings (v2) and sets extensions, homogeneous aggregate literals,
// cross-type numeric comparisons, UTC as default time zone. Not here: the Kubernetes-specific
// libraries (quantity, IP/CIDR, URLs, regex helpers, authorizer) and the API server's typing of
// object by OpenAPI schema; an expression that uses those fails to compile (exit 2), so it is
// noticed rather than misjudged. Variables evaluate to errors
// without failing the request unless an expression uses them, as the API server's lazy
// evaluation does. A compile error exits 2 naming the expression.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

type namedExpr struct {
	Name       string `json:"name"`
	Expression string `json:"expression"`
}

type validation struct {
	Expression        string `json:"expression"`
	Message           string `json:"message"`
	MessageExpression string `json:"messageExpression"`
}

type resourceRule struct {
	APIGroups   []string `json:"apiGroups"`
	APIVersions []string `json:"apiVersions"`
	Operations  []string `json:"operations"`
	Resources   []string `json:"resources"`
}

type mutation struct {
	PatchType          string `json:"patchType"`
	ApplyConfiguration *struct {
		Expression string `json:"expression"`
	} `json:"applyConfiguration"`
}

// policySpec is the spec of a ValidatingAdmissionPolicy or of a MutatingAdmissionPolicy.
type policySpec struct {
	ParamKind *struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	} `json:"paramKind"`
	MatchConstraints *struct {
		ResourceRules []resourceRule `json:"resourceRules"`
	} `json:"matchConstraints"`
	MatchConditions    []namedExpr  `json:"matchConditions"`
	Variables          []namedExpr  `json:"variables"`
	Validations        []validation `json:"validations"`
	Mutations          []mutation   `json:"mutations"`
	FailurePolicy      string       `json:"failurePolicy"`
	ReinvocationPolicy string       `json:"reinvocationPolicy"`
}

type labelSelector struct {
	MatchLabels      map[string]string `json:"matchLabels"`
	MatchExpressions []struct {
		Key      string   `json:"key"`
		Operator string   `json:"operator"`
		Values   []string `json:"values"`
	} `json:"matchExpressions"`
}

type bindingSpec struct {
	PolicyName string `json:"policyName"`
	ParamRef   *struct {
		Name                    string         `json:"name"`
		Namespace               string         `json:"namespace"`
		Selector                *labelSelector `json:"selector"`
		ParameterNotFoundAction string         `json:"parameterNotFoundAction"`
	} `json:"paramRef"`
}

type request struct {
	Operation string `json:"operation"`
	Resource  struct {
		Group    string `json:"group"`
		Version  string `json:"version"`
		Resource string `json:"resource"`
	} `json:"resource"`
	SubResource string `json:"subResource"`
	Namespace   string `json:"namespace"`
}

type input struct {
	Policy         *policySpec       `json:"policy"`
	MutatingPolicy *policySpec       `json:"mutatingPolicy"`
	Binding        *bindingSpec      `json:"binding"`
	Params         []json.RawMessage `json:"params"`
	Request        json.RawMessage   `json:"request"`
	Object         json.RawMessage   `json:"object"`
	OldObject      json.RawMessage   `json:"oldObject"`
	Expression     string            `json:"expression"`
	Vars           map[string]any    `json:"vars"`
}

func fail(code int, format string, a ...any) {
	fmt.Fprintf(os.Stderr, "celeval: "+format+"\n", a...)
	os.Exit(code)
}

// decode parses JSON with integers as int64 (as the API server's unstructured objects have
// them), other numbers as float64.
func decode(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		fail(2, "bad JSON: %v", err)
	}
	return numbers(v)
}

func numbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case map[string]any:
		for k, e := range t {
			t[k] = numbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = numbers(e)
		}
	}
	return v
}

func newEnv(names ...string) *cel.Env { return newEnvWith(nil, names...) }

// newEnvWith is newEnv with more options, applied last.
func newEnvWith(extra []cel.EnvOption, names ...string) *cel.Env {
	opts := []cel.EnvOption{
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(ext.StringsVersion(2)),
		ext.Sets(),
	}
	for _, n := range names {
		opts = append(opts, cel.Variable(n, cel.DynType))
	}
	opts = append(opts, extra...)
	env, err := cel.NewEnv(opts...)
	if err != nil {
		fail(2, "CEL environment: %v", err)
	}
	return env
}

func compile(env *cel.Env, what, expr string) cel.Program {
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		fail(2, "%s: compile error in %q:\n%v", what, expr, iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		fail(2, "%s: %q: %v", what, expr, err)
	}
	return prg
}

func eval(prg cel.Program, act map[string]any) ref.Val {
	v, _, err := prg.Eval(act)
	if err != nil {
		return types.WrapErr(err)
	}
	return v
}

func has(list []string, s string) bool {
	for _, e := range list {
		if e == "*" || e == s {
			return true
		}
	}
	return false
}

func hasResource(list []string, res, sub string) bool {
	want := res
	if sub != "" {
		want = res + "/" + sub
	}
	for _, e := range list {
		if e == "*/*" || e == want || (e == "*" && sub == "") ||
			(sub != "" && (e == res+"/*" || e == "*/"+sub)) {
			return true
		}
	}
	return false
}

func inRules(spec *policySpec, r request) bool {
	if spec.MatchConstraints == nil {
		return false
	}
	for _, rule := range spec.MatchConstraints.ResourceRules {
		if has(rule.APIGroups, r.Resource.Group) && has(rule.APIVersions, r.Resource.Version) &&
			has(rule.Operations, r.Operation) &&
			hasResource(rule.Resources, r.Resource.Resource, r.SubResource) {
			return true
		}
	}
	return false
}

func asBool(v ref.Val) (bool, error) {
	if types.IsError(v) {
		return false, v.Value().(error)
	}
	b, ok := v.(types.Bool)
	if !ok {
		return false, fmt.Errorf("result is %s, not bool", v.Type().TypeName())
	}
	return bool(b), nil
}

type result struct {
	Applies bool   `json:"applies"`
	Allowed bool   `json:"allowed"`
	Message string `json:"message"`
}

func admit(in input) result {
	spec := in.Policy
	var req request
	if err := json.Unmarshal(in.Request, &req); err != nil {
		fail(2, "request: %v", err)
	}
	if req.Operation == "" || req.Resource.Resource == "" {
		fail(2, "request needs operation and resource.resource")
	}
	env := newEnv("request", "object", "oldObject", "params", "namespaceObject", "variables")
	vars := map[ref.Val]ref.Val{}
	act := map[string]any{
		"request":         decode(in.Request),
		"object":          decode(in.Object),
		"oldObject":       decode(in.OldObject),
		"params":          nil,
		"namespaceObject": nil,
		"variables":       types.NewRefValMap(types.DefaultTypeAdapter, vars),
	}
	// Compile everything first: a policy with a broken expression is broken for every request.
	var conds, varPrgs, valPrgs, msgPrgs []cel.Program
	for _, c := range spec.MatchConditions {
		conds = append(conds, compile(env, "matchCondition "+c.Name, c.Expression))
	}
	for _, v := range spec.Variables {
		varPrgs = append(varPrgs, compile(env, "variable "+v.Name, v.Expression))
	}
	for i, v := range spec.Validations {
		valPrgs = append(valPrgs, compile(env, fmt.Sprintf("validation %d", i), v.Expression))
		var m cel.Program
		if v.MessageExpression != "" {
			m = compile(env, fmt.Sprintf("messageExpression of validation %d", i),
				v.MessageExpression)
		}
		msgPrgs = append(msgPrgs, m)
	}

	if !inRules(spec, req) {
		return result{Applies: false, Allowed: true}
	}
	for i, c := range spec.MatchConditions {
		ok, err := asBool(eval(conds[i], act))
		if err != nil {
			return result{Applies: true, Allowed: false,
				Message: fmt.Sprintf("matchCondition %s: %v", c.Name, err)}
		}
		if !ok {
			return result{Applies: false, Allowed: true}
		}
	}
	for i, v := range spec.Variables {
		vars[types.String(v.Name)] = eval(varPrgs[i], act)
	}
	for i, v := range spec.Validations {
		ok, err := asBool(eval(valPrgs[i], act))
		if err != nil {
			return result{Applies: true, Allowed: false,
				Message: fmt.Sprintf("expression '%s' resulted in error: %v", v.Expression, err)}
		}
		if ok {
			continue
		}
		msg := v.Message
		if msgPrgs[i] != nil {
			m := eval(msgPrgs[i], act)
			if s, isStr := m.(types.String); isStr && strings.TrimSpace(string(s)) != "" {
				msg = string(s)
			} else if types.IsError(m) {
				fmt.Fprintf(os.Stderr, "celeval: messageExpression %q: %v\n",
					v.MessageExpression, m)
			}
		}
		if msg == "" {
			msg = "failed expression: " + v.Expression
		}
		return result{Applies: true, Allowed: false, Message: strings.TrimSpace(msg)}
	}
	return result{Applies: true, Allowed: true}
}

func main() {
	var in input
	d := json.NewDecoder(os.Stdin)
	if err := d.Decode(&in); err != nil {
		fail(2, "stdin: %v", err)
	}
	var out any
	switch {
	case in.Policy != nil:
		out = admit(in)
	case in.MutatingPolicy != nil:
		out = mutate(in)
	case in.Expression != "":
		var names []string
		act := map[string]any{}
		for k, v := range in.Vars {
			names = append(names, k)
			raw, _ := json.Marshal(v)
			act[k] = decode(raw)
		}
		v := eval(compile(newEnv(names...), "expression", in.Expression), act)
		if types.IsError(v) {
			fail(1, "expression %q: %v", in.Expression, v)
		}
		native, err := v.ConvertToNative(reflect.TypeOf(&structpb.Value{}))
		if err != nil {
			fail(1, "expression %q: result %v: %v", in.Expression, v, err)
		}
		j, err := protojson.Marshal(native.(proto.Message))
		if err != nil {
			fail(1, "%v", err)
		}
		out = map[string]json.RawMessage{"value": j}
	default:
		fail(2, "stdin needs policy, mutatingPolicy or expression")
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(2, "%v", err)
	}
}
