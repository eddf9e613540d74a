package main

// The MutatingAdmissionPolicy half of celeval: a policy, its binding and the binding's candidate
// params, evaluated on one object the way the API server's mutating admission does it.

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// objectTypes declares the API server's apply-configuration types: "Object" and every
// "Object.<field>..." below it, as struct types whose fields are dyn (the API server types them
// by the resource's OpenAPI schema; here a misspelt field is caught by the merge instead, which
// refuses what it does not know). Every other name goes to the environment's own provider.
type objectTypes struct{ types.Provider }

func isObjectType(name string) bool { return name == "Object" || strings.HasPrefix(name, "Object.") }

func (p objectTypes) FindStructType(name string) (*types.Type, bool) {
	if isObjectType(name) {
		return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
	}
	return p.Provider.FindStructType(name)
}

func (p objectTypes) FindStructFieldNames(name string) ([]string, bool) {
	if isObjectType(name) {
		return nil, true
	}
	return p.Provider.FindStructFieldNames(name)
}

func (p objectTypes) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	if isObjectType(name) {
		return &types.FieldType{Type: types.DynType}, true
	}
	return p.Provider.FindStructFieldType(name, field)
}

func (p objectTypes) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if !isObjectType(name) {
		return p.Provider.NewValue(name, fields)
	}
	m := map[ref.Val]ref.Val{}
	for k, v := range fields {
		m[types.String(k)] = v
	}
	return types.NewRefValMap(types.DefaultTypeAdapter, m)
}

// withObjectTypes is the last option of the mutation environment: it wraps the provider the
// earlier options built.
func withObjectTypes(e *cel.Env) (*cel.Env, error) {
	return cel.CustomTypeProvider(objectTypes{e.CELTypeProvider()})(e)
}

// listKeys: the lists of a Pod that the merge knows, by their path (list fields only, indexes
// left out), and the key of their entries (listType=map in the API's schema). Every other list
// is treated as atomic, which an apply configuration may not change.
var listKeys = map[string]string{
	"spec.containers":                           "name",
	"spec.initContainers":                       "name",
	"spec.ephemeralContainers":                  "name",
	"spec.resourceClaims":                       "name",
	"spec.volumes":                              "name",
	"spec.containers.env":                       "name",
	"spec.initContainers.env":                   "name",
	"spec.containers.resources.claims":          "name",
	"spec.initContainers.resources.claims":      "name",
	"spec.ephemeralContainers.resources.claims": "name",
	"spec.containers.volumeMounts":              "mountPath",
	"spec.initContainers.volumeMounts":          "mountPath",
}

// merge applies an apply configuration to an object as server-side apply does: maps field by
// field, known keyed lists entry by entry (a new entry goes to the end), scalars replaced.
func merge(path string, obj, patch any) (any, error) {
	switch p := patch.(type) {
	case map[string]any:
		o, ok := obj.(map[string]any)
		if obj == nil {
			o, ok = map[string]any{}, true
		}
		if !ok {
			return nil, fmt.Errorf("%s: an object in the apply configuration, %T in the object", path, obj)
		}
		out := map[string]any{}
		for k, v := range o {
			out[k] = v
		}
		for k, v := range p {
			sub := k
			if path != "" {
				sub = path + "." + k
			}
			m, err := merge(sub, o[k], v)
			if err != nil {
				return nil, err
			}
			out[k] = m
		}
		return out, nil
	case []any:
		key, known := listKeys[path]
		if !known {
			return nil, fmt.Errorf("%s: atomic list, an apply configuration may not change it", path)
		}
		o, ok := obj.([]any)
		if obj != nil && !ok {
			return nil, fmt.Errorf("%s: a list in the apply configuration, %T in the object", path, obj)
		}
		out := append([]any{}, o...)
		for _, e := range p {
			pe, isMap := e.(map[string]any)
			if !isMap || pe[key] == nil {
				return nil, fmt.Errorf("%s: entry %v has no %q", path, e, key)
			}
			at := -1
			for i, oe := range out {
				if om, isMap := oe.(map[string]any); isMap && om[key] == pe[key] {
					at = i
					break
				}
			}
			if at < 0 {
				m, err := merge(path, nil, pe)
				if err != nil {
					return nil, err
				}
				out = append(out, m)
				continue
			}
			m, err := merge(path, out[at], pe)
			if err != nil {
				return nil, err
			}
			out[at] = m
		}
		return out, nil
	default:
		return patch, nil
	}
}

// toJSONValue turns a CEL result into plain JSON data.
func toJSONValue(v ref.Val) (any, error) {
	native, err := v.ConvertToNative(reflect.TypeOf(&structpb.Value{}))
	if err != nil {
		return nil, err
	}
	raw, err := protojson.Marshal(native.(*structpb.Value))
	if err != nil {
		return nil, err
	}
	return decode(raw), nil
}

func selects(sel *labelSelector, labels map[string]any) bool {
	if sel == nil {
		return false // no selector and no name: the API server refuses such a binding
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	for _, e := range sel.MatchExpressions {
		v, present := labels[e.Key]
		in := false
		for _, w := range e.Values {
			if v == w {
				in = true
			}
		}
		switch e.Operator {
		case "In":
			if !present || !in {
				return false
			}
		case "NotIn":
			if present && in {
				return false
			}
		case "Exists":
			if !present {
				return false
			}
		case "DoesNotExist":
			if present {
				return false
			}
		default:
			fail(2, "binding: selector operator %q", e.Operator)
		}
	}
	return true
}

func metaOf(obj any) map[string]any {
	o, _ := obj.(map[string]any)
	m, _ := o["metadata"].(map[string]any)
	return m
}

type mutateResult struct {
	Applies bool   `json:"applies"`
	Allowed bool   `json:"allowed"`
	Message string `json:"message"`
	Object  any    `json:"object"`
}

// mutate: {"mutatingPolicy": <spec>, "binding": <spec>, "params": [...], "request": {...,
// "namespace"}, "object": ...} -> {"applies", "allowed", "message", "object"}. The params are
// the objects of the policy's paramKind the API server would list; the binding's paramRef picks
// among them (name or selector, in paramRef.namespace or else the request's namespace). The
// policy is evaluated once per selected param, in order, each seeing the object as the earlier
// ones left it. applies: some evaluation passed its matchConditions. object: the result.
func mutate(in input) mutateResult {
	spec := in.MutatingPolicy
	var req request
	if err := json.Unmarshal(in.Request, &req); err != nil {
		fail(2, "request: %v", err)
	}
	if req.Operation == "" || req.Resource.Resource == "" {
		fail(2, "request needs operation and resource.resource")
	}
	env := newEnvWith([]cel.EnvOption{withObjectTypes},
		"request", "object", "oldObject", "params", "namespaceObject", "variables")
	var conds, varPrgs, mutPrgs []cel.Program
	for _, c := range spec.MatchConditions {
		conds = append(conds, compile(env, "matchCondition "+c.Name, c.Expression))
	}
	for _, v := range spec.Variables {
		varPrgs = append(varPrgs, compile(env, "variable "+v.Name, v.Expression))
	}
	for i, m := range spec.Mutations {
		if m.PatchType != "ApplyConfiguration" || m.ApplyConfiguration == nil {
			fail(2, "mutation %d: only patchType ApplyConfiguration is evaluated here", i)
		}
		what := fmt.Sprintf("mutation %d", i)
		ast, iss := env.Compile(m.ApplyConfiguration.Expression)
		if iss != nil && iss.Err() != nil {
			fail(2, "%s: compile error in %q:\n%v", what, m.ApplyConfiguration.Expression, iss.Err())
		}
		if t := ast.OutputType(); t.TypeName() != "Object" {
			fail(2, "%s: the expression is of type %s, an apply configuration must be an Object",
				what, t.TypeName())
		}
		mutPrgs = append(mutPrgs, compile(env, what, m.ApplyConfiguration.Expression))
	}
	if spec.FailurePolicy != "Fail" && spec.FailurePolicy != "Ignore" && spec.FailurePolicy != "" {
		fail(2, "failurePolicy %q", spec.FailurePolicy)
	}
	failClosed := spec.FailurePolicy != "Ignore" // the API's default is Fail

	object := decode(in.Object)
	if !inRules(spec, req) {
		return mutateResult{Allowed: true, Object: object}
	}

	// The params the binding selects.
	var params []any
	if spec.ParamKind != nil {
		ref := in.Binding
		if ref == nil || ref.ParamRef == nil {
			fail(2, "the policy has a paramKind: the binding needs a paramRef")
		}
		ns := ref.ParamRef.Namespace
		if ns == "" {
			ns = req.Namespace
		}
		if ns == "" {
			ns, _ = metaOf(object)["namespace"].(string)
		}
		for _, raw := range in.Params {
			p := decode(raw)
			meta := metaOf(p)
			if pns, _ := meta["namespace"].(string); pns != ns {
				continue
			}
			labels, _ := meta["labels"].(map[string]any)
			if ref.ParamRef.Name != "" {
				if meta["name"] != ref.ParamRef.Name {
					continue
				}
			} else if !selects(ref.ParamRef.Selector, labels) {
				continue
			}
			params = append(params, p)
		}
		if len(params) == 0 {
			if ref.ParamRef.ParameterNotFoundAction == "Deny" {
				return mutateResult{Applies: true, Object: object,
					Message: fmt.Sprintf("no params found for policy binding with Deny "+
						"parameterNotFoundAction (namespace %q)", ns)}
			}
			return mutateResult{Allowed: true, Object: object}
		}
	} else {
		params = []any{nil}
	}

	res := mutateResult{Allowed: true}
	for _, param := range params {
		vars := map[ref.Val]ref.Val{}
		act := map[string]any{
			"request":         decode(in.Request),
			"object":          object,
			"oldObject":       decode(in.OldObject),
			"params":          param,
			"namespaceObject": nil,
			"variables":       types.NewRefValMap(types.DefaultTypeAdapter, vars),
		}
		failed := func(format string, a ...any) bool {
			if !failClosed {
				return false
			}
			res.Allowed, res.Message = false, fmt.Sprintf(format, a...)
			return true
		}
		matched := true
		for i, c := range spec.MatchConditions {
			ok, err := asBool(eval(conds[i], act))
			if err != nil {
				matched = false
				if failed("matchCondition %s: %v", c.Name, err) {
					res.Object = object
					return res
				}
				break
			}
			if !ok {
				matched = false
				break
			}
		}
		if !matched {
			continue
		}
		res.Applies = true
		for i, v := range spec.Variables {
			vars[types.String(v.Name)] = eval(varPrgs[i], act)
		}
		for i, m := range spec.Mutations {
			v := eval(mutPrgs[i], act)
			if types.IsError(v) {
				if failed("expression '%s' resulted in error: %v", m.ApplyConfiguration.Expression, v) {
					res.Object = object
					return res
				}
				continue
			}
			patch, err := toJSONValue(v)
			if err == nil {
				var merged any
				if merged, err = merge("", object, patch); err == nil {
					object = merged
					act["object"] = object
					continue
				}
			}
			if failed("mutation %d: %v", i, err) {
				res.Object = object
				return res
			}
		}
	}
	res.Object = object
	return res
}
