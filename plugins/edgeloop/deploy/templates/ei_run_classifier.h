/* edgeloop C++ library: public API.
 *
 *   #include "edge-impulse-sdk/classifier/ei_run_classifier.h"
 *   result_t result;
 *   int err = run_classifier(features, EI_CLASSIFIER_NN_INPUT_FRAME_SIZE, &result);
 *   // result.classification[i].label / .value, result.top_label
 */
#ifndef EI_RUN_CLASSIFIER_H
#define EI_RUN_CLASSIFIER_H

#include <stddef.h>

#include "../../model-parameters/model_metadata.h"

typedef struct {
  const char* label;
  float value;
} ei_impulse_result_classification_t;

typedef struct {
  /* Per-label score (dequantized output), in label order. */
  ei_impulse_result_classification_t classification[EI_CLASSIFIER_LABEL_COUNT];
  size_t top;            /* index of the highest score */
  const char* top_label; /* its label */
} result_t;

enum {
  EI_IMPULSE_OK = 0,
  EI_IMPULSE_INPUT_SIZE_MISMATCH = -1,
  EI_IMPULSE_NULL_ARGUMENT = -2
};

/* Quantizes the n float features (for int8 models), runs the model,
 * dequantizes the output into out. n must equal EI_CLASSIFIER_NN_INPUT_FRAME_SIZE.
 * Returns EI_IMPULSE_OK or a negative error code. Not re-entrant. */
int run_classifier(const float* features, size_t n, result_t* out);

#endif
