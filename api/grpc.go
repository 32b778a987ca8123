package api

import (
	"context"
	"math"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/feedback"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
	"github.com/modelgate/modelgate/router"
	"github.com/modelgate/modelgate/topk"
)

// nonFinite finds a NaN or ±Inf number in v, which a protobuf Struct can
// carry (JSON cannot): it returns the number and its path below v
// (".a[2]"). No model input may be such a number; it is the client's error.
func nonFinite(v *structpb.Value) (path string, x float64, bad bool) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		if math.IsNaN(k.NumberValue) || math.IsInf(k.NumberValue, 0) {
			return "", k.NumberValue, true
		}
	case *structpb.Value_StructValue:
		for key, e := range k.StructValue.GetFields() {
			if p, x, bad := nonFinite(e); bad {
				return "." + key + p, x, true
			}
		}
	case *structpb.Value_ListValue:
		for i, e := range k.ListValue.GetValues() {
			if p, x, bad := nonFinite(e); bad {
				return "[" + strconv.Itoa(i) + "]" + p, x, true
			}
		}
	}
	return "", 0, false
}

// grpcGateway implements modelgate.v1.Gateway over the same core as HTTP.
type grpcGateway struct {
	pb.UnimplementedGatewayServer
	s *Server
}

// RegisterGRPC registers the Gateway service and server reflection on g.
func (s *Server) RegisterGRPC(g *grpc.Server) {
	pb.RegisterGatewayServer(g, &grpcGateway{s: s})
	reflection.Register(g)
}

func (g *grpcGateway) Recommend(ctx context.Context, in *pb.RecommendRequest) (*pb.RecommendResponse, error) {
	req, err := pbRequest(in)
	if err != nil {
		return nil, grpcError(err)
	}
	req.Pin = grpcPin(ctx) // who may pin: pinRoutes
	resp, err := g.s.router.Recommend(ctx, req)
	if err != nil {
		return nil, grpcCallError(ctx, err)
	}
	return pbResponse(resp), nil
}

// pbRequest is in as the router takes it.
func pbRequest(in *pb.RecommendRequest) (*router.Request, error) {
	if err := topk.Check(int(in.GetK()), true); err != nil {
		return nil, err
	}
	req := &router.Request{Endpoint: in.GetEndpoint(), UserID: in.GetUserId(), Context: in.GetContext(),
		Candidates: in.GetCandidates(), Exclude: in.GetExclude(), K: int(in.GetK())}
	if f := in.GetFeatures(); f != nil {
		for key, v := range f.GetFields() {
			if path, x, bad := nonFinite(v); bad {
				return nil, fault.Field("features."+key+path, "invalid_number", "the number %v is not finite", x)
			}
		}
		req.Features = f.AsMap()
	}
	return req, nil
}

func pbResponse(resp *router.Response) *pb.RecommendResponse {
	out := &pb.RecommendResponse{PredictionId: resp.PredictionID, Endpoint: resp.Endpoint, Arm: resp.Arm,
		Model: resp.Model, Version: resp.Version, Segment: resp.Segment, Fallback: resp.Fallback, Pinned: resp.Pinned,
		Items: make([]*pb.Item, len(resp.Items))}
	for i, it := range resp.Items {
		out.Items[i] = &pb.Item{Id: it.ID, Score: it.Score}
	}
	return out
}

func pbError(err error) *pb.RecommendBatchEntry {
	_, d := classify(err)
	return &pb.RecommendBatchEntry{Result: &pb.RecommendBatchEntry_Error{Error: &pb.Error{Code: d.Code, Message: d.Message, Field: d.Field}}}
}

func (g *grpcGateway) RecommendBatch(ctx context.Context, in *pb.RecommendBatchRequest) (*pb.RecommendBatchResponse, error) {
	err := router.CheckBatchSize(len(in.GetRequests()))
	pin := grpcPin(ctx) // who may pin: pinRoutes
	if err == nil {
		err = g.s.chargeBatch(ctx, len(in.GetRequests()))
	}
	grpcRetryAfter(ctx, err)
	if err != nil {
		return nil, grpcError(err)
	}
	endpoint := in.GetEndpoint()
	out := &pb.RecommendBatchResponse{Responses: make([]*pb.RecommendBatchEntry, len(in.GetRequests()))}
	err = g.s.serveBatch(ctx, endpoint, pin, len(in.GetRequests()),
		func(i int) (*router.Request, error) {
			req, err := pbRequest(in.GetRequests()[i])
			if err == nil && req.Endpoint != "" && req.Endpoint != endpoint {
				err = fault.Field("endpoint", "invalid_endpoint", "an entry's endpoint must be empty or the batch's (%q)", endpoint)
			}
			return req, err
		},
		func(i int, resp *router.Response, err error) {
			if err != nil {
				out.Responses[i] = pbError(err)
				return
			}
			out.Responses[i] = &pb.RecommendBatchEntry{Result: &pb.RecommendBatchEntry_Response{Response: pbResponse(resp)}}
		})
	if err != nil {
		return nil, grpcCallError(ctx, err)
	}
	return out, nil
}

func (g *grpcGateway) Feedback(ctx context.Context, in *pb.FeedbackRequest) (*pb.FeedbackResponse, error) {
	evs := make([]feedback.Event, len(in.GetEvents()))
	for i, e := range in.GetEvents() {
		evs[i] = feedback.Event{PredictionID: e.GetPredictionId(), Type: feedback.EventType(e.GetType()), ItemID: e.GetItemId()}
		if e.Value != nil {
			v := feedback.Value(e.GetValue())
			evs[i].Value = &v
		}
	}
	res, err := g.s.feedback.Record(ctx, evs)
	if err != nil {
		return nil, grpcCallError(ctx, err)
	}
	out := &pb.FeedbackResponse{Accepted: int32(res.Accepted), Duplicates: int32(res.Duplicates),
		Rejected: make([]*pb.Rejection, len(res.Rejected))}
	for i, r := range res.Rejected {
		out.Rejected[i] = &pb.Rejection{Index: int32(r.Index), Code: r.Code}
	}
	return out, nil
}
