package gateway

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
)

func TestLoopOverGRPC(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	conn, err := grpc.NewClient(a.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewGatewayClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	feats, _ := structpb.NewStruct(map[string]any{"recent_items": []any{"i3", "i9"}})
	rec, err := c.Recommend(ctx, &pb.RecommendRequest{Endpoint: "home", UserId: "someone-new", Features: feats,
		Candidates: []string{"i1", "i2", "i3", "i4"}, Exclude: []string{"i2"}, K: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rec.GetSegment() != "all" || rec.GetPredictionId() == "" || len(rec.GetItems()) != 3 {
		t.Fatalf("Recommend: %+v", rec)
	}
	for _, it := range rec.GetItems() {
		if it.GetId() != "i1" && it.GetId() != "i3" && it.GetId() != "i4" {
			t.Fatalf("item %s is not an allowed candidate", it.GetId())
		}
	}
	fb, err := c.Feedback(ctx, &pb.FeedbackRequest{Events: []*pb.FeedbackEvent{
		{PredictionId: rec.GetPredictionId(), Type: "click", ItemId: "i3"},
		{PredictionId: "bogus", Type: "click"}}})
	if err != nil {
		t.Fatal(err)
	}
	if fb.GetAccepted() != 1 || len(fb.GetRejected()) != 1 || fb.GetRejected()[0].GetCode() != "invalid_prediction_id" || fb.GetRejected()[0].GetIndex() != 1 {
		t.Fatalf("Feedback: %+v", fb)
	}
	var rep reportResp
	call(t, "GET", a.url+"/v1/endpoints/home/report", nil, &rep)
	if tr, su := rep.arm(rec.GetArm()); tr != 1 || su != 1 {
		t.Fatalf("report after gRPC loop: %d trials %g successes", tr, su)
	}

	for _, tc := range []struct {
		name string
		req  *pb.RecommendRequest
		code codes.Code
	}{
		{"unknown endpoint", &pb.RecommendRequest{Endpoint: "nope", UserId: "u1"}, codes.NotFound},
		{"empty user", &pb.RecommendRequest{Endpoint: "home"}, codes.InvalidArgument},
		{"k too big", &pb.RecommendRequest{Endpoint: "home", UserId: "u1", K: 5000}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Recommend(ctx, tc.req)
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
		})
	}
}

// RecommendBatch over gRPC: each entry its own prediction or its own
// error, in order; the whole call fails only for its envelope.
func TestRecommendBatchOverGRPC(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	conn, err := grpc.NewClient(a.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewGatewayClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	out, err := c.RecommendBatch(ctx, &pb.RecommendBatchRequest{Endpoint: "home", Requests: []*pb.RecommendRequest{
		{UserId: "u1", K: 2},
		{UserId: "u2", K: 5000},
		{Endpoint: "home", UserId: "u3", Candidates: []string{"i1", "i2"}, K: 1},
		{Endpoint: "other", UserId: "u4"},
		{},
	}})
	if err != nil {
		t.Fatal(err)
	}
	wantErr := []string{"", "invalid_k", "", "invalid_endpoint", "missing_field"}
	if len(out.GetResponses()) != len(wantErr) {
		t.Fatalf("%d responses, want %d", len(out.GetResponses()), len(wantErr))
	}
	var events []*pb.FeedbackEvent
	for i, want := range wantErr {
		e := out.GetResponses()[i]
		if got := e.GetError().GetCode(); got != want {
			t.Errorf("entry %d: error %q, want %q", i, got, want)
		}
		if want == "" {
			r := e.GetResponse()
			if r.GetPredictionId() == "" || r.GetEndpoint() != "home" || len(r.GetItems()) == 0 {
				t.Errorf("entry %d: response %+v", i, r)
				continue
			}
			events = append(events, &pb.FeedbackEvent{PredictionId: r.GetPredictionId(), Type: "click", ItemId: r.GetItems()[0].GetId()})
		}
	}
	if got := out.GetResponses()[2].GetResponse().GetItems(); len(got) != 1 || (got[0].GetId() != "i1" && got[0].GetId() != "i2") {
		t.Errorf("entry 2 items %v, want one of its candidates", got)
	}
	fb, err := c.Feedback(ctx, &pb.FeedbackRequest{Events: events})
	if err != nil || fb.GetAccepted() != 2 {
		t.Fatalf("feedback on the batch's predictions: %+v, %v", fb, err)
	}

	for _, tc := range []struct {
		name string
		req  *pb.RecommendBatchRequest
		code codes.Code
	}{
		{"no requests", &pb.RecommendBatchRequest{Endpoint: "home"}, codes.InvalidArgument},
		{"too many", &pb.RecommendBatchRequest{Endpoint: "home", Requests: make([]*pb.RecommendRequest, 257)}, codes.InvalidArgument},
		{"unknown endpoint", &pb.RecommendBatchRequest{Endpoint: "nope", Requests: []*pb.RecommendRequest{{UserId: "u"}}}, codes.NotFound},
		{"unknown endpoint, every entry refused", &pb.RecommendBatchRequest{Endpoint: "nope", Requests: []*pb.RecommendRequest{{}}}, codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.RecommendBatch(ctx, tc.req)
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
		})
	}
}
