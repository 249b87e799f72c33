"""Writers: the TorchScript and ONNX exports of one recurrent step, and the one-graph greedy decoder.
The torch-free reader of the ONNX files is runtime/, a layer above."""
