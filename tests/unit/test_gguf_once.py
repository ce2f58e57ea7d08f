"""slmops.gguf_once: one parse per GGUF file and one name map per model inside the block,
gguf-py's own functions outside it."""

import gguf
import numpy as np
import pytest

from slmops.gguf_once import parsed_once


def write_gguf(path, value):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("test.value", value)
    writer.add_tensor("token_embd.weight", np.arange(12, dtype=np.float32).reshape(3, 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def value_of(reader):
    field = reader.fields["test.value"]
    return int(field.parts[field.data[0]][0])


def test_each_file_is_parsed_once_inside_and_anew_outside(tmp_path):
    first, second = write_gguf(tmp_path / "a.gguf", 1), write_gguf(tmp_path / "b.gguf", 2)
    real_reader, real_name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with parsed_once():
        reader = gguf.GGUFReader(first)
        assert gguf.GGUFReader(str(first)) is reader  # the same file by another spelling
        assert value_of(reader) == 1 and value_of(gguf.GGUFReader(second)) == 2
        assert reader.tensors[0].data.tolist() == np.arange(12).reshape(3, 4).tolist()
        name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is name_map
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 3) is not name_map
        assert name_map.get_name("model.layers.1.self_attn.q_proj") == "blk.1.attn_q"
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (real_reader, real_name_map)
    assert gguf.GGUFReader(first) is not gguf.GGUFReader(first)


def test_the_originals_are_back_after_an_error(tmp_path):
    real_reader = gguf.GGUFReader
    with pytest.raises(KeyError), parsed_once():
        raise KeyError("conversion failed")
    assert gguf.GGUFReader is real_reader
