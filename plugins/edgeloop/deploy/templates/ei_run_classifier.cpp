/* edgeloop C++ library: run_classifier(). */
#include "ei_run_classifier.h"

#include <math.h>
#include <stdint.h>

#include "../../model-parameters/model_variables.h"
#include "../../tflite-model/trained_model_compiled.h"

int run_classifier(const float* features, size_t n, result_t* out) {
  if (features == NULL || out == NULL) return EI_IMPULSE_NULL_ARGUMENT;
  if (n != static_cast<size_t>(EI_CLASSIFIER_NN_INPUT_FRAME_SIZE)) {
    return EI_IMPULSE_INPUT_SIZE_MISMATCH;
  }
  el_input_t* input = trained_model_input();
#if EL_INPUT_INT8
  const float scale = static_cast<float>(EI_CLASSIFIER_TFLITE_INPUT_SCALE);
  for (size_t i = 0; i < n; ++i) {
    int32_t q = static_cast<int32_t>(roundf(features[i] / scale)) +
                EI_CLASSIFIER_TFLITE_INPUT_ZEROPOINT;
    if (q < -128) q = -128;
    if (q > 127) q = 127;
    input[i] = static_cast<el_input_t>(q);
  }
#else
  for (size_t i = 0; i < n; ++i) input[i] = features[i];
#endif
  trained_model_invoke();
  const el_output_t* output = trained_model_output();
  out->top = 0;
  for (size_t i = 0; i < static_cast<size_t>(EI_CLASSIFIER_LABEL_COUNT); ++i) {
#if EL_OUTPUT_INT8
    const float v = static_cast<float>(
        (static_cast<int32_t>(output[i]) - EI_CLASSIFIER_TFLITE_OUTPUT_ZEROPOINT) *
        EI_CLASSIFIER_TFLITE_OUTPUT_SCALE);
#else
    const float v = static_cast<float>(output[i]);
#endif
    out->classification[i].label = ei_classifier_inferencing_categories[i];
    out->classification[i].value = v;
    if (v > out->classification[out->top].value) out->top = i;
  }
  out->top_label = ei_classifier_inferencing_categories[out->top];
  return EI_IMPULSE_OK;
}
