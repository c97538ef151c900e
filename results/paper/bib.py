"""`refs.bib`: correct entries for what the study used (its dataset, the tools, the challenge)."""
from __future__ import annotations

DATASETS = {  # study dataset -> (name in the text, BibTeX key or None)
    "synthetic": ("the built-in synthetic AIGC-like set (procedural scenes with known distortions)", None),
    "agiqa3k": ("AGIQA-3K", "li2024agiqa3k"),
    "agiqa1k": ("AGIQA-1K", "zhang2023agiqa1k"),
    "aigiqa20k": ("AIGIQA-20K", "li2024aigiqa20k"),
}
BIB = {
    "li2024agiqa3k": """@article{li2024agiqa3k,
  author  = {Li, Chunyi and Zhang, Zicheng and Wu, Haoning and Sun, Wei and Min, Xiongkuo and Liu, Xiaohong and Zhai, Guangtao and Lin, Weisi},
  title   = {{AGIQA-3K}: An Open Database for {AI}-Generated Image Quality Assessment},
  journal = {IEEE Transactions on Circuits and Systems for Video Technology},
  volume  = {34},
  number  = {8},
  pages   = {6833--6846},
  year    = {2024},
  doi     = {10.1109/TCSVT.2023.3319020}
}""",
    "zhang2023agiqa1k": """@inproceedings{zhang2023agiqa1k,
  author    = {Zhang, Zicheng and Li, Chunyi and Sun, Wei and Liu, Xiaohong and Min, Xiongkuo and Zhai, Guangtao},
  title     = {A Perceptual Quality Assessment Exploration for {AIGC} Images},
  booktitle = {IEEE International Conference on Multimedia and Expo Workshops (ICMEW)},
  pages     = {440--445},
  year      = {2023}
}""",
    "li2024aigiqa20k": """@inproceedings{li2024aigiqa20k,
  author    = {Li, Chunyi and Kou, Tengchuan and Gao, Yixuan and Cao, Yuqin and Sun, Wei and Zhang, Zicheng and Zhou, Yingjie and Zhang, Zhichao and Zhang, Weixia and Wu, Haoning and others},
  title     = {{AIGIQA-20K}: A Large Database for {AI}-Generated Image Quality Assessment},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR) Workshops},
  pages     = {6327--6336},
  year      = {2024}
}""",
    "akiba2019optuna": """@inproceedings{akiba2019optuna,
  author    = {Akiba, Takuya and Sano, Shotaro and Yanase, Toshihiko and Ohta, Takeru and Koyama, Masanori},
  title     = {Optuna: A Next-generation Hyperparameter Optimization Framework},
  booktitle = {Proceedings of the 25th ACM SIGKDD International Conference on Knowledge Discovery \\& Data Mining},
  pages     = {2623--2631},
  year      = {2019},
  doi       = {10.1145/3292500.3330701}
}""",
    "fang2023depgraph": """@inproceedings{fang2023depgraph,
  author    = {Fang, Gongfan and Ma, Xinyin and Song, Mingli and Mi, Michael Bi and Wang, Xinchao},
  title     = {{DepGraph}: Towards Any Structural Pruning},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {16091--16101},
  year      = {2023}
}""",
    "paszke2019pytorch": """@inproceedings{paszke2019pytorch,
  author    = {Paszke, Adam and Gross, Sam and Massa, Francisco and Lerer, Adam and Bradbury, James and Chanan, Gregory and Killeen, Trevor and Lin, Zeming and Gimelshein, Natalia and Antiga, Luca and Desmaison, Alban and K{\\"o}pf, Andreas and Yang, Edward and DeVito, Zachary and Raison, Martin and Tejani, Alykhan and Chilamkurthy, Sasank and Steiner, Benoit and Fang, Lu and Bai, Junjie and Chintala, Soumith},
  title     = {{PyTorch}: An Imperative Style, High-Performance Deep Learning Library},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  volume    = {32},
  pages     = {8024--8035},
  year      = {2019}
}""",
    "icme2026challenge": """@misc{icme2026challenge,
  title        = {{ICME} 2026 Grand Challenge on Lightweight Neural Networks for {AIGC} Image Quality Assessment},
  howpublished = {IEEE International Conference on Multimedia and Expo (ICME) Grand Challenge},
  year         = {2026}
}""",
}
ALWAYS_CITED = ("li2024agiqa3k", "akiba2019optuna", "fang2023depgraph", "paszke2019pytorch", "icme2026challenge")
def refs_bib(dataset: str) -> str:
    """The BibTeX entries of what the study used: AGIQA-3K, its own dataset, Optuna, PyTorch, Torch-Pruning,
    the challenge."""
    key = DATASETS.get(dataset, (dataset, None))[1]
    keys = list(ALWAYS_CITED) + ([key] if key and key not in ALWAYS_CITED else [])
    return "\n\n".join(BIB[k] for k in keys) + "\n"
