package oiptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modelgate/modelgate/proto/inference"
)

// handler is the HTTP/REST face of the server.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, _ *http.Request) {
		s.begin("ServerLive", "")
		writeJSON(w, http.StatusOK, map[string]bool{"live": true})
	})
	for _, prefix := range []string{"/v2/models/{name}", "/v2/models/{name}/versions/{version}"} {
		mux.HandleFunc("GET "+prefix, func(w http.ResponseWriter, r *http.Request) {
			md, err := s.metadata(r.PathValue("name"), r.PathValue("version"))
			if err != nil {
				writeError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, metadataJSON(md))
		})
		mux.HandleFunc("GET "+prefix+"/ready", func(w http.ResponseWriter, r *http.Request) {
			ready := s.ready(r.PathValue("name"), r.PathValue("version"))
			s.mu.Lock()
			body := s.ready200
			s.mu.Unlock()
			if !ready && !body {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "model is not ready"})
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"name": r.PathValue("name"), "ready": ready})
		})
		mux.HandleFunc("POST "+prefix+"/infer", s.httpInfer)
	}
	return mux
}

type jsonTensor struct {
	Name     string          `json:"name"`
	Datatype string          `json:"datatype"`
	Shape    []int64         `json:"shape"`
	Data     json.RawMessage `json:"data,omitempty"`
}

func metadataJSON(md *inference.ModelMetadataResponse) map[string]any {
	conv := func(ts []*inference.ModelMetadataResponse_TensorMetadata) []jsonTensor {
		out := []jsonTensor{}
		for _, t := range ts {
			out = append(out, jsonTensor{Name: t.GetName(), Datatype: t.GetDatatype(), Shape: t.GetShape()})
		}
		return out
	}
	return map[string]any{"name": md.GetName(), "versions": md.GetVersions(), "platform": md.GetPlatform(),
		"inputs": conv(md.GetInputs()), "outputs": conv(md.GetOutputs())}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// httpStatus is the HTTP status a server answers a failure of code with.
func httpStatus(code codes.Code) int {
	switch code {
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Unimplemented:
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	writeJSON(w, httpStatus(st.Code()), map[string]string{"error": st.Message()})
}

func (s *Server) httpInfer(w http.ResponseWriter, r *http.Request) {
	name, version := r.PathValue("name"), r.PathValue("version")
	var body struct {
		ID      string       `json:"id"`
		Inputs  []jsonTensor `json:"inputs"`
		Outputs []struct {
			Name string `json:"name"`
		} `json:"outputs"`
	}
	req := &inference.ModelInferRequest{ModelName: name, ModelVersion: version}
	rec := Request{Protocol: "http", Infer: req, Header: lowerKeys(r.Header)}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err == nil {
		err = json.Unmarshal(raw, &body)
	}
	var in []tensor
	if err == nil {
		in, err = jsonInputs(body.Inputs)
	}
	var wanted []string
	for _, o := range body.Outputs {
		wanted = append(wanted, o.Name)
		req.Outputs = append(req.Outputs, &inference.ModelInferRequest_InferRequestedOutputTensor{Name: o.Name})
	}
	for _, t := range in {
		req.Inputs = append(req.Inputs, &inference.ModelInferRequest_InferInputTensor{Name: t.name, Datatype: t.datatype, Shape: t.shape,
			Contents: &inference.InferTensorContents{BoolContents: t.b, IntContents: t.i32, Int64Contents: t.i64,
				Fp32Contents: t.f32, Fp64Contents: t.f64, BytesContents: t.bytes}})
	}
	if err != nil {
		s.record(rec)
		s.begin("ModelInfer", name)
		writeError(w, errorf(codes.InvalidArgument, "malformed request: %v", err))
		return
	}
	m, out, bad, _, err := s.infer(r.Context(), rec, in, wanted)
	if err != nil {
		writeError(w, err)
		return
	}
	if bad == Malformed {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"outputs": [`))
		return
	}
	out = spoil(filter(out, wanted), m.scoresName(), bad)
	resp := map[string]any{"model_name": m.Name, "model_version": version, "outputs": []any{}}
	if body.ID != "" {
		resp["id"] = body.ID
	}
	outs := []any{}
	for _, t := range out {
		var data any
		switch {
		case t.f32 != nil:
			data = t.f32
		case t.f64 != nil:
			data = t.f64
		case t.i64 != nil:
			data = t.i64
		case t.i32 != nil:
			data = t.i32
		case t.b != nil:
			data = t.b
		default:
			strs := make([]string, len(t.bytes))
			for i, b := range t.bytes {
				strs[i] = string(b)
			}
			data = strs
		}
		outs = append(outs, map[string]any{"name": t.name, "datatype": t.datatype, "shape": t.shape, "data": data})
	}
	resp["outputs"] = outs
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(resp); err != nil {
		writeError(w, status.Error(codes.Internal, err.Error()))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf.Bytes())
}

// jsonInputs reads the inputs of a JSON request: each input's data flat or
// nested, as the datatype's JSON values (BYTES as strings).
func jsonInputs(ts []jsonTensor) ([]tensor, error) {
	out := make([]tensor, len(ts))
	for i, t := range ts {
		out[i] = tensor{name: t.Name, datatype: t.Datatype, shape: t.Shape}
		dec := json.NewDecoder(bytes.NewReader(t.Data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("input '%s': data: %w", t.Name, err)
		}
		if err := flatten(&out[i], v); err != nil {
			return nil, fmt.Errorf("input '%s': %w", t.Name, err)
		}
	}
	return out, nil
}

func flatten(t *tensor, v any) error {
	if list, ok := v.([]any); ok {
		for _, e := range list {
			if err := flatten(t, e); err != nil {
				return err
			}
		}
		return nil
	}
	switch x := v.(type) {
	case bool:
		if t.datatype != "BOOL" {
			return fmt.Errorf("a boolean in %s data", t.datatype)
		}
		t.b = append(t.b, x)
	case string:
		if t.datatype != "BYTES" {
			return fmt.Errorf("a string in %s data", t.datatype)
		}
		t.bytes = append(t.bytes, []byte(x))
	case json.Number:
		switch t.datatype {
		case "INT32", "INT64":
			n, err := x.Int64()
			if err != nil {
				return err
			}
			if t.datatype == "INT32" {
				t.i32 = append(t.i32, int32(n))
			} else {
				t.i64 = append(t.i64, n)
			}
		case "FP32", "FP64":
			f, err := x.Float64()
			if err != nil {
				return err
			}
			if t.datatype == "FP32" {
				t.f32 = append(t.f32, float32(f))
			} else {
				t.f64 = append(t.f64, f)
			}
		default:
			return fmt.Errorf("a number in %s data", t.datatype)
		}
	default:
		return errors.New("data holds a value of no datatype")
	}
	return nil
}
