package featurizer_test

import (
	"fmt"

	"github.com/modelgate/modelgate/featurizer"
)

func Example() {
	plan, err := featurizer.Parse([]byte(`{"inputs": {
		"user":   {"from": "user_id", "transform": "hash_bucket", "buckets": 3, "dtype": "int64"},
		"age_b":  {"from": "features.age", "transform": "bucketize", "boundaries": [18, 25, 35, 50], "dtype": "int32"},
		"recent": {"from": "features.recent_items", "transform": "list", "length": 4, "pad": "", "dtype": "string"}}}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	tensors, err := plan.Build(&featurizer.Request{
		UserID:   "Hello",
		Features: map[string]any{"age": 35.0, "recent_items": []any{"i3", "i9"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range tensors {
		fmt.Println(t.Name, t.DType, t.Shape, t.Int32, t.Int64, t.String)
	}

	_, err = plan.Build(&featurizer.Request{UserID: "Hello"})
	fmt.Println(err)
	// Output:
	// age_b int32 [1] [3] [] []
	// recent string [1 4] [] [] [i3 i9  ]
	// user int64 [1] [] [0] []
	// features.age: missing value for input "age_b"
}

func ExampleHashBucket() {
	// The same ids as tf.strings.to_hash_bucket_fast(["Hello", "TensorFlow", "2.x"], 3).
	for _, s := range []string{"Hello", "TensorFlow", "2.x"} {
		fmt.Print(featurizer.HashBucket(s, 3), " ")
	}
	fmt.Println()
	// Output: 0 2 2
}
