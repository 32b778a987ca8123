package featurizer

import (
	"reflect"
	"testing"
)

func TestTensorValues(t *testing.T) {
	cases := []Tensor{
		{DType: Float32, Float32: []float32{1}},
		{DType: Float64, Float64: []float64{2}},
		{DType: Int32, Int32: []int32{3}},
		{DType: Int64, Int64: []int64{4}},
		{DType: String, String: []string{"a"}},
		{DType: Bool, Bool: []bool{true}},
	}
	for _, tc := range cases {
		v := reflect.ValueOf(tc.Values())
		if v.Kind() != reflect.Slice || v.Len() != 1 || v.Len() != tc.Len() {
			t.Errorf("%s: Values() = %v", tc.DType, tc.Values())
		}
	}
	if v := (&Tensor{}).Values(); v != nil {
		t.Errorf("invalid dtype: %v", v)
	}
}
